"""CompileError / ToolchainMissing: what the user reads when a build fails (no compiler runs here)."""

import pickle

from runtime import CompileError, ToolchainMissing
from runtime.errors import first_error_line, numbered_excerpt

SOURCE = "\n".join(f"int line_{number} = {number};" for number in range(1, 21)) + "\n"


def test_gcc_log_points_at_line_and_message_shows_it(tmp_path):
    source_path = tmp_path / "program.c"
    source_path.write_text(SOURCE)
    log = (
        f"{source_path}: In function 'f':\n"
        f"/usr/include/stdio.h:3:1: note: declared here\n"
        f"{source_path}:12:7: error: expected ';' before '}}' token\n"
    )
    error = CompileError(log, ["cc", "-O3", str(source_path)], source_path, toolchain="C compiler", returncode=1)
    message = str(error)
    assert error.line == 12  # our file's error line, not the header note's line 3
    assert "expected ';' before" in message
    assert str(source_path) in message
    assert "exit status 1" in message
    assert "> 12 | int line_12 = 12;" in message and "   9 | int line_9 = 9;" in message
    # three lines of context on each side, and no further
    assert "int line_9 = 9;" in message and "int line_15 = 15;" in message
    assert "int line_8 = 8;" not in message and "int line_16 = 16;" not in message


def test_nvrtc_style_log_is_understood(tmp_path):
    log = 'kernel.cu(6): error: identifier "x" is undefined\n'
    assert first_error_line(log, "kernel.cu") == 6


def test_log_without_line_numbers_still_gives_a_message(tmp_path):
    source_path = tmp_path / "program.c"
    source_path.write_text(SOURCE)
    error = CompileError("ld: cannot find -lfoo", "cc x.c", source_path)
    assert error.line is None
    assert "cannot find -lfoo" in str(error) and str(source_path) in str(error)


def test_excerpt_clamps_at_file_edges():
    assert numbered_excerpt("a\nb\n", 1).splitlines() == ["> 1 | a", "  2 | b"]
    assert numbered_excerpt("a\n", 5) == ""


def test_relocated_error_points_at_kept_source(tmp_path):
    old, new = tmp_path / "tmp" / "build-1", tmp_path / "failed" / "key"
    new.mkdir(parents=True)
    (new / "program.c").write_text(SOURCE)
    error = CompileError(f"{old}/program.c:2:1: error: boom", ["cc", f"{old}/program.c"], old / "program.c", source=SOURCE)
    moved = error.relocated(old, new)
    assert moved.source_path == new / "program.c"
    assert str(old) not in str(moved) and f"{new}/program.c:2:1: error: boom" in str(moved)


def test_errors_survive_pickling(tmp_path):
    # pytest-xdist and multiprocessing send exceptions between processes
    error = CompileError("p.c:1:1: error: x", ["cc"], tmp_path / "p.c", toolchain="C compiler", returncode=2, source="x\n")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.line == 1 and copy.returncode == 2
    missing = pickle.loads(pickle.dumps(ToolchainMissing("no cc", "install gcc")))
    assert str(missing) == "no cc. install gcc" and missing.hint == "install gcc"
