"""Differential test of graphc.compile: a compiled function against the same Python run uncompiled.

The rule (DESIGN.md, "Front end: two modes"): a replay computes what running the Python would
compute on that call -- every `.grad` written and accumulated as `backward()` would, every value
read from closures, globals and attributes either a runtime input or guarded -- or it retraces.
Each program (compiled_programs.py) runs twice from identical fresh state, uncompiled and
through `graphc.compile`, for at least four calls with fresh random inputs each call; after
every call the two runs must agree on the returned values, every `.grad` (None against not-None
too), every captured tensor, float, parameter and optimizer state entry. The compiled function
must also replay (a test that always retraces would pass vacuously).

Random programs are seeded and the same in every session (so a warm build cache makes this file
fast); GRAPHC_COMPILED_SEED and GRAPHC_COMPILED_PROGRAMS pick others. The soak is
`python -m tests.fuzz --mode compiled`.
"""
from __future__ import annotations

import os
import runpy

import pytest

import compiled_programs
from compiled_programs import CompiledProgram

SEED = int(os.environ.get("GRAPHC_COMPILED_SEED", "20240601"))
PROGRAMS = int(os.environ.get("GRAPHC_COMPILED_PROGRAMS", "48"))
SHARDS = 4


def check(program: CompiledProgram, replay_expected: bool = True):
    """Run `program` both ways; fail with the disagreements and a stand-alone reproducer."""
    outcome = compiled_programs.check(program)
    if outcome.problems:
        pytest.fail(_explain(outcome, "test_compile_differential"), pytrace=False)
    if replay_expected and outcome.replays < 1:
        pytest.fail(f"the compiled function never replayed ({outcome.stats['traces']} traces for "
                    f"{outcome.stats['driver_calls']} calls): {program.describe()}\n"
                    + "\n".join(f"  trace: {entry['reason']} ({entry.get('note', 'kept')})"
                                for entry in outcome.stats["history"]), pytrace=False)
    return outcome


def _explain(outcome, origin: str) -> str:
    shown = outcome.problems[:12]
    more = len(outcome.problems) - len(shown)
    return ("\n".join(shown) + (f"\n... and {more} more" if more else "") + f"\n{outcome.program.describe()}"
            + "\n---- reproducer ----\n" + compiled_programs.reproducer(outcome, origin) + "---- end ----")


# ---- one named pattern each ----------------------------------------------------------------------------
BASE = dict(seed=5, shape=(3, 4), calls=5, x0_grad=False)   # arguments need no grad unless the test is about them
MODEL = dict(module="linear", optimizer="momentum", zero_grad="start")


def test_arguments_that_require_grad_get_their_grad_every_call():
    check(CompiledProgram(**{**BASE, "x0_grad": True}, x1="mul", x1_grad=True, x1_partner=1, returns="tuple"))


def test_an_argument_broadcast_against_another_gets_its_reduced_grad():
    check(CompiledProgram(**BASE, x1="add", x1_grad=True, x1_partner=0,
                          steps=(("unary", 4, 0), ("reduce", 1, 9))))


def test_a_captured_tensor_gets_this_calls_grad():
    check(CompiledProgram(**BASE, closure_tensor="mul", captured_grad="none", returns="grad"))


def test_a_captured_tensor_grad_zeroed_in_place_each_call():
    check(CompiledProgram(**BASE, closure_tensor="mul", captured_grad="zero",   # (x0 * cw: a new grad each call)
                          captured_shape="full", returns="tuple"))


def test_grads_accumulate_over_four_calls_without_zero_grad():
    check(CompiledProgram(**{**BASE, "calls": 4}, closure_tensor="mul", global_tensor="add",
                          module="linear", optimizer=None, zero_grad="none", captured_grad="keep"))


def test_grads_accumulate_into_parameters_stepped_by_sgd():
    check(CompiledProgram(**{**BASE, "calls": 4}, module="mlp", optimizer="sgd", zero_grad="none"))


@pytest.mark.parametrize("zero_grad", ["start", "start_keep", "end"])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_zero_grad_inside_the_step(zero_grad, optimizer):
    check(CompiledProgram(**BASE, module="linear", optimizer=optimizer, zero_grad=zero_grad,
                          steps=(("unary", 2, 0),)))


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adamw", "rmsprop"])
def test_each_optimizer_with_accumulated_grads(optimizer):
    check(CompiledProgram(**BASE, module="mlp", optimizer=optimizer, zero_grad="none"))


def test_micro_batches_zeroed_by_the_driver_every_other_call():
    check(CompiledProgram(**{**BASE, "calls": 6}, module="linear", optimizer="momentum", zero_grad="none",
                          events=(("zero_grad", 1), ("zero_grad", 3))))


@pytest.mark.parametrize("update", ["sub_", "isub"])
def test_a_captured_tensor_updated_in_place_under_no_grad(update):
    check(CompiledProgram(**BASE, closure_tensor="mul", global_tensor="add", update=update,
                          captured_grad="none", returns="tuple"))


@pytest.mark.parametrize("where", ["body", "loss", "update"])
def test_a_closure_float_changed_between_calls(where):
    check(CompiledProgram(**{**BASE, "calls": 6}, closure_tensor="mul", update="sub_", captured_grad="none",
                          closure_float=where, floats_change=True))


@pytest.mark.parametrize("where", ["body", "update"])
def test_a_global_float_changed_between_calls(where):
    check(CompiledProgram(**{**BASE, "calls": 6}, global_tensor="mul", update="sub_", captured_grad="none",
                          global_float=where, floats_change=True))


def test_a_global_float_read_by_a_helper_function_changed_between_calls():
    check(CompiledProgram(**{**BASE, "calls": 6}, closure_tensor="mul", captured_grad="none",
                          global_float="helper", floats_change=True))


def test_an_object_attribute_changed_between_calls():
    check(CompiledProgram(**{**BASE, "calls": 6}, closure_tensor="mul", captured_grad="none",
                          config_float=True, floats_change=True))


def test_a_float_argument_changed_between_calls():
    check(CompiledProgram(**{**BASE, "calls": 6}, float_arg=True))


def test_a_module_float_attribute_changed_between_calls():
    check(CompiledProgram(**{**BASE, "calls": 6}, module="scaled", optimizer="sgd", zero_grad="start",
                          floats_change=True))


def test_a_captured_tensor_rebound_to_a_new_tensor_of_the_same_shape():
    check(CompiledProgram(**BASE, closure_tensor="mul", captured_grad="none", events=(("rebind", 1),)))


def test_a_captured_tensor_rebound_to_a_new_tensor_of_another_shape():
    check(CompiledProgram(**BASE, closure_tensor="mul", captured_grad="none", events=(("rebind_shape", 1),)))


def test_a_captured_list_element_replaced_between_calls():
    check(CompiledProgram(**BASE, closure_tensor="mul", captured_list=True, update="isub", captured_grad="none",
                          events=(("list_rebind", 1),)))


def test_requires_grad_toggled_on_a_captured_tensor_between_calls():
    check(CompiledProgram(**{**BASE, "calls": 6}, closure_tensor="mul", module="linear", optimizer="sgd",
                          zero_grad="start", captured_grad="zero",
                          events=(("captured_requires_grad", 1), ("captured_requires_grad", 3))))


def test_a_global_tensor_rebound_between_calls():
    check(CompiledProgram(**BASE, global_tensor="add", captured_grad="none", events=(("global_rebind", 1),)))


def test_a_captured_tensor_given_new_data_between_calls():
    check(CompiledProgram(**BASE, closure_tensor="mul", captured_grad="none", events=(("captured_data", 1),)))


def test_parameter_data_assigned_a_lazy_tensor_between_steps():
    check(CompiledProgram(**BASE, **MODEL, events=(("data", 1),)))


def test_a_lazy_gradient_assigned_by_the_driver_between_steps():
    check(CompiledProgram(**BASE, module="linear", optimizer="momentum", zero_grad="none",
                          events=(("grad_assign", 1),)))


def test_requires_grad_false_on_a_parameter_between_calls():
    check(CompiledProgram(**{**BASE, "calls": 6}, **MODEL, events=(("requires_grad_off", 1),)))


def test_train_and_eval_toggled_with_dropout():
    check(CompiledProgram(**{**BASE, "calls": 6}, module="dropout", optimizer="momentum", zero_grad="start",
                          events=(("train_eval", 1), ("train_eval", 3))))


def test_batchnorm_buffers_in_train_and_eval():
    check(CompiledProgram(**{**BASE, "calls": 6}, module="batchnorm", optimizer="momentum", zero_grad="start",
                          events=(("train_eval", 2),)))


def test_clip_grad_norm_before_the_optimizer_step():
    check(CompiledProgram(**BASE, module="mlp", optimizer="adam", zero_grad="start", clip=True))


def test_two_backward_calls_in_one_step_accumulate():
    check(CompiledProgram(**BASE, closure_tensor="mul", module="linear", optimizer="sgd", zero_grad="start",
                          captured_grad="none", backward_twice=True, steps=(("unary", 4, 0),)))


def test_the_same_argument_tensors_every_call_accumulate_and_are_updated_in_place():
    check(CompiledProgram(**{**BASE, "x0_grad": True}, x1="mul", x1_grad=True, reuse_inputs=True, update="sub_",
                          closure_tensor="add", captured_grad="none"))


def test_an_argument_updated_in_place_whose_old_value_is_another_arguments_grad():
    """(x0 * x1).sum().backward(): x1.grad is x0 itself, read before the step updates x0 in place."""
    check(CompiledProgram(**{**BASE, "x0_grad": True}, x1="mul", x1_grad=True, reuse_inputs=True, update="sub_",
                          closure_tensor="add", captured_grad="none", plain_loss=True))


def test_the_dropout_probability_changed_between_calls():
    check(CompiledProgram(**BASE, module="dropout", optimizer="sgd", zero_grad="start",
                          events=(("dropout_p", 1),)))


@pytest.mark.parametrize("event,optimizer", [("momentum", "momentum"), ("lr", "momentum"), ("lr", "adam"),
                                             ("betas", "adam")])
def test_a_param_group_option_changed_between_calls(event, optimizer):
    check(CompiledProgram(**{**BASE, "calls": 6}, module="linear", optimizer=optimizer, zero_grad="start",
                          events=((event, 1),)))


def test_alternating_input_shapes():
    check(CompiledProgram(**{**BASE, "calls": 6}, **MODEL, closure_tensor="mul", captured_grad="none",
                          x1="add", x1_grad=True, x1_partner=0, alternate_shapes=True, returns="tuple"))


@pytest.mark.parametrize("partner", [1, 0])   # x1 of x0's shape, or of its last dimension
def test_keyword_arguments_in_changing_order(partner):
    check(CompiledProgram(**BASE, x1="sub", x1_partner=partner, kwargs=True, closure_tensor="mul",
                          captured_grad="none", returns="tuple"))


def test_the_same_tensor_passed_as_two_arguments_on_some_calls():
    check(CompiledProgram(**{**BASE, "calls": 6}, x1="mul", x1_grad=True, x1_partner=1, alias_calls=(2, 3)))


def test_a_returned_grad_survives_later_calls():
    check(CompiledProgram(**BASE, closure_tensor="mul", captured_grad="keep", returns="grad"))


def test_a_returned_grad_zeroed_in_place_by_the_next_call():
    """The step returns `cw.grad` itself; the next call's `cw.grad.zero_()` zeroes what it returned."""
    check(CompiledProgram(**BASE, closure_tensor="mul", captured_grad="zero", returns="grad"))


def test_float64_step_with_everything():
    check(CompiledProgram(**{**BASE, "calls": 6}, dtype="float64", x1="mul", x1_grad=True,
                          closure_tensor="mul", global_tensor="add", closure_float="body", global_float="loss",
                          module="mlp", optimizer="adam", zero_grad="start_keep", update="isub",
                          returns="dict", steps=(("softmax", 1, 0), ("matmul", 2, 3))))


# ---- random programs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shard", range(SHARDS))
def test_random_compiled_programs_match_the_uncompiled_run(shard):
    """Programs SHARD, SHARD + SHARDS, ... of the seeded set: all of them agree, and the compiled
    function replays (at least one call neither traced nor fell back) in every program the
    driver does not change between calls, and in most of the others."""
    indices = range(shard, PROGRAMS, SHARDS)
    failures, vacuous, replayed = [], [], 0
    for index in indices:
        program = compiled_programs.program_at(SEED, index)
        outcome = compiled_programs.check(program)
        origin = f"GRAPHC_COMPILED_SEED={SEED} program {index}; python -m tests.fuzz --mode compiled " \
                 f"--seed {SEED} --only {index}"
        if outcome.problems:
            failures.append((origin, outcome))
            continue
        replayed += outcome.replays >= 1
        if outcome.replays < 1 and not program.expects_retraces:
            vacuous.append(f"{origin}: never replayed: {[e['reason'] for e in outcome.stats['history']]}")
    lines = [f"{len(failures)} of {len(indices)} programs disagree"]
    for origin, outcome in failures:
        lines.append(f"  {origin}: {outcome.problems[0]}")
    if failures:
        origin, outcome = failures[0]
        lines.append("first failure in full:\n" + _explain(outcome, origin))
    if failures:
        pytest.fail("\n".join(lines), pytrace=False)
    if vacuous:
        pytest.fail("\n".join(vacuous), pytrace=False)
    assert replayed >= 0.6 * len(indices), f"only {replayed} of {len(indices)} programs replayed"


def test_the_generator_covers_every_pattern():
    """The seeded set exercises each pattern the generator knows (so none silently drops out)."""
    programs = [compiled_programs.program_at(SEED, k) for k in range(200)]
    seen = set()
    for p in programs:
        seen |= {f"module {p.module}", f"optimizer {p.optimizer}", f"zero_grad {p.zero_grad}",
                 f"update {p.update}", f"returns {p.returns}", f"captured_grad {p.captured_grad}"}
        seen |= {f"event {name}" for name, _ in p.events}
        seen |= {name for name in ("closure_tensor", "global_tensor", "closure_float", "global_float",
                                   "floats_change", "float_arg", "kwargs", "alias_calls", "alternate_shapes",
                                   "x1_grad", "steps", "captured_list", "config_float", "clip",
                                   "backward_twice", "reuse_inputs", "plain_loss") if getattr(p, name)}
        seen.add(f"global_float {p.global_float}")
        seen.add(f"dtype {p.dtype}")
        compiled_programs.generate(p)   # every drawn program generates
    wanted = {f"module {m}" for m in compiled_programs.MODULES} | \
        {f"optimizer {o}" for o in compiled_programs.OPTIMIZERS} | \
        {f"event {e}" for e in compiled_programs.EVENTS} | \
        {"zero_grad none", "zero_grad start", "zero_grad start_keep", "zero_grad end", "update sub_",
         "update isub", "returns grad", "returns dict", "captured_grad zero", "dtype float64",
         "closure_tensor", "global_tensor", "closure_float", "global_float", "floats_change", "float_arg",
         "kwargs", "alias_calls", "alternate_shapes", "x1_grad", "steps", "captured_list", "config_float",
         "clip", "backward_twice", "reuse_inputs", "plain_loss", "global_float helper"}
    assert wanted <= seen, sorted(wanted - seen)


# ---- the driver itself, on a bug planted on purpose ---------------------------------------------------
@pytest.fixture
def compile_loses_captured_grads(monkeypatch):
    """A fake graphc.compile: runs the Python, then drops the .grad of the closure tensor `cw`."""
    import graphc

    def fake_compile(function, backend=None):
        def wrapper(*args, **kwargs):
            result = function(*args, **kwargs)
            for cell in function.__closure__ or ():
                value = cell.cell_contents
                if isinstance(value, graphc.Tensor) and value.requires_grad and value.grad is not None:
                    value.grad = value.grad * 0.5
            return result
        wrapper.stats = lambda: {"traces": 1, "variants": 1, "fallbacks": 0, "history": [], "calls": [1]}
        return wrapper
    monkeypatch.setattr(graphc, "compile", fake_compile)


def test_a_planted_bug_is_found_minimized_and_reproduced(compile_loses_captured_grads, tmp_path, capsys):
    program = CompiledProgram(seed=9, shape=(2, 3), steps=(("unary", 3, 0), ("matmul", 1, 1)), x1="add",
                              closure_tensor="mul", closure_float="body", module="linear", optimizer="sgd",
                              zero_grad="start", returns="tuple", calls=4)
    outcome = compiled_programs.check(program)
    assert outcome.problems and outcome.signature == ("mismatch", "cw.grad"), outcome.problems
    small = compiled_programs.minimize(outcome)
    assert small.signature == outcome.signature
    assert small.program.closure_tensor and not small.program.module and not small.program.steps
    assert small.program.calls <= 2 and small.program.x1 is None, small.program.describe()
    script = tmp_path / "reproducer.py"
    script.write_text(compiled_programs.reproducer(small, "planted"))
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_status.value.code == 1
    assert "MISMATCH call 0: cw.grad" in capsys.readouterr().out


def test_the_soak_cli_reports_and_saves_a_reproducer(compile_loses_captured_grads, monkeypatch, tmp_path, capsys):
    import fuzz
    program = CompiledProgram(seed=2, shape=(2,), closure_tensor="mul", x0_grad=False, calls=4)
    monkeypatch.setattr(compiled_programs, "program_at", lambda seed, index: program)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    assert fuzz.main(["--mode", "compiled", "--graphs", "1", "--seed", "3", "--save", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert "--mode compiled --seed 3 --only 0" in printed and "cw.grad" in printed
    assert "1 programs (seed 3)" in printed and list(tmp_path.glob("repro_seed3_1.py"))


def test_an_error_on_one_side_only_is_a_disagreement(monkeypatch):
    import graphc

    def failing_compile(function, backend=None):
        def wrapper(*args, **kwargs):
            raise RuntimeError("planted")
        wrapper.stats = lambda: {"traces": 0, "variants": 0, "fallbacks": 0, "history": [], "calls": []}
        return wrapper
    monkeypatch.setattr(graphc, "compile", failing_compile)
    outcome = compiled_programs.check(CompiledProgram(seed=1, calls=4))
    assert len(outcome.problems) == 1, outcome.problems
    assert outcome.problems[0].startswith("call 0: raised: compiled 'RuntimeError") and "planted" in outcome.problems[0]
    assert outcome.problems[0].endswith("uncompiled 'nothing'")
