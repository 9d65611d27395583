/* Host emulation of the CUDA features graphc's generated kernels use, for tests on machines
 * without a GPU (tests/cuda_emulator.py compiles a rendered program with
 * `g++ -std=c++20 -include tests/cuda_emulation.h` and calls the emu_* entries it appends).
 *
 * The model, and why:
 * - The blocks of a launch run one after another; the threads of a block run as real OS threads.
 *   So `__syncthreads()` is a real barrier and a missing one is a real race, and `__shared__`
 *   arrays can be function statics (one block is alive at a time).
 * - A warp is 32 consecutive threads of the block. `__shfl_down_sync` publishes each lane's value
 *   in a per-warp slot array between two warp barriers; a lane whose source is past the warp's
 *   end keeps its own value, as on the GPU.
 * - Barriers are futex words with a deadline, and each round remembers where its first thread
 *   waits: threads meeting at different barriers, or a barrier some thread never reaches (a
 *   `__syncthreads()` inside divergent code), end the launch with an error message instead of
 *   passing by luck or hanging the test.
 * - Dynamic shared memory (`GRAPHC_DYNAMIC_SHARED`, the prelude's `extern __shared__`) is one
 *   static array, filled with NaN bytes before every block so a read before a write shows.
 * - atomicAdd is a real atomic (std::atomic_ref); math functions are <cmath>'s overloads, which
 *   pick float or double by argument type as CUDA's do.
 */
#ifndef GRAPHC_CUDA_EMULATION_H
#define GRAPHC_CUDA_EMULATION_H

#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <math.h>

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GRAPHC_EMULATE 1

/* ---- CUDA keywords ------------------------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static   /* one block runs at a time: a function static is the block's array */

/* ---- index variables ------------------------------------------------------------------------------- */
struct dim3 {   /* no member initializers: a thread_local of a trivial type costs no init call */
  unsigned int x, y, z;
};
static thread_local dim3 threadIdx;
static thread_local dim3 blockIdx;
static dim3 blockDim;
static dim3 gridDim;

namespace graphc_emulation {

constexpr int WARP = 32;
constexpr int MAX_THREADS = 1024;
constexpr long SHARED_CAPACITY = 48 * 1024;   /* CUDA's default limit on dynamic shared memory */
constexpr size_t STACK_BYTES = 512 * 1024;

static char error_message[1024];
static std::atomic<bool> broken{false};
static const char *kernel_name = "";

static double deadlock_seconds = 20.0;   /* how long a barrier waits before the launch is failed */

static void fail_at_barrier(const char *what, int thread) {
  bool expected = false;
  if (broken.compare_exchange_strong(expected, true)) {
    std::snprintf(error_message, sizeof error_message,
                  "kernel %s block (%u, %u, %u): thread %d waited more than %g s at %s; some thread of its "
                  "group never got there (a barrier in divergent code?)",
                  kernel_name, blockIdx.x, blockIdx.y, blockIdx.z, thread, deadlock_seconds, what);
  }
}

static void fail_at_different_barriers(const char *here, const char *there, int thread) {
  bool expected = false;
  if (broken.compare_exchange_strong(expected, true)) {
    std::snprintf(error_message, sizeof error_message,
                  "kernel %s block (%u, %u, %u): thread %d reached %s while others of its group wait at %s "
                  "(a barrier in divergent code)",
                  kernel_name, blockIdx.x, blockIdx.y, blockIdx.z, thread, here, there);
  }
}

static double now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static thread_local int linear_thread;   /* threadIdx flattened: x fastest, as CUDA numbers lanes */

/* A reusable barrier for `count` threads: the last to arrive bumps the generation word and wakes
   the others with one futex call. Arrivals are acq_rel and the generation is released and acquired,
   so memory written before the barrier is visible after it, as with __syncthreads(). */
class Barrier {
 public:
  void reset(int count) {
    count_ = count;
    arrived_.store(0);
    site_.store(nullptr);
  }

  void wait(const char *what) {
    const int generation = generation_.load(std::memory_order_acquire);
    const char *site = nullptr;   /* every thread of one round must be at the same barrier */
    if (!site_.compare_exchange_strong(site, what) && std::strcmp(site, what) != 0) {
      fail_at_different_barriers(what, site, linear_thread);
    }
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      arrived_.store(0, std::memory_order_relaxed);
      site_.store(nullptr, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      syscall(SYS_futex, reinterpret_cast<int *>(&generation_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
      return;
    }
    const double deadline = now() + deadlock_seconds;
    const timespec slice{1, 0};
    while (generation_.load(std::memory_order_acquire) == generation) {
      if (broken.load(std::memory_order_relaxed)) return;   /* the launch failed: run out, don't hang */
      syscall(SYS_futex, reinterpret_cast<int *>(&generation_), FUTEX_WAIT_PRIVATE, generation, &slice, nullptr, 0);
      if (generation_.load(std::memory_order_acquire) == generation && now() > deadline) {
        fail_at_barrier(what, linear_thread);
        return;
      }
    }
  }

 private:
  std::atomic<int> generation_{0};   /* the futex word (a 32-bit int, as futexes need) */
  std::atomic<int> arrived_{0};
  std::atomic<const char *> site_{nullptr};   /* where this round's first thread waits */
  int count_ = 1;
};
static_assert(sizeof(std::atomic<int>) == sizeof(int), "a futex word is an int");

static Barrier block_barrier;
static Barrier warp_barriers[MAX_THREADS / WARP];
alignas(16) static unsigned char warp_slots[MAX_THREADS / WARP][WARP][8];
alignas(16) static unsigned char dynamic_shared[SHARED_CAPACITY];

struct Launch {
  void (*kernel)(void **);
  void **buffers;
  long long blocks;
  int threads;
  long long shared_bytes;
  bool blocks_share_nothing;   /* no barriers, shuffles or shared memory: no need to wait between blocks */
};
static Launch launch;

static int warp_size(int warp) {
  const int rest = launch.threads - warp * WARP;
  return rest < WARP ? rest : WARP;
}

static void run_blocks(const int t) {
  threadIdx = {t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
  for (long long b = 0; b < launch.blocks && !broken.load(std::memory_order_relaxed); b++) {
    blockIdx = {static_cast<unsigned int>(b % gridDim.x), static_cast<unsigned int>((b / gridDim.x) % gridDim.y),
                static_cast<unsigned int>(b / ((long long)gridDim.x * gridDim.y))};
    launch.kernel(launch.buffers);
    if (launch.blocks_share_nothing) continue;
    block_barrier.wait("the end of the block");   /* the next block reuses the shared arrays */
    if (launch.shared_bytes > 0) {
      if (t == 0) std::memset(dynamic_shared, 0xff, launch.shared_bytes);   /* NaN: fresh garbage */
      block_barrier.wait("the end of the block");
    }
  }
}

/* The block's threads: a pool kept from launch to launch of one program run (creating 1024 threads
   costs ~50 ms), each sleeping on its own futex word until the next launch needs it. */
struct Worker {
  std::atomic<int> go{0};
  pthread_t handle;
};
static Worker workers[MAX_THREADS];
static int pool_size = 0;
static bool stopping = false;
static std::atomic<int> finished{0};

static void futex_wait(std::atomic<int> *word, int value) {
  syscall(SYS_futex, reinterpret_cast<int *>(word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
}
static void futex_wake(std::atomic<int> *word, int count) {
  syscall(SYS_futex, reinterpret_cast<int *>(word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
}

static void *worker_main(void *argument) {
  const int t = static_cast<int>(reinterpret_cast<intptr_t>(argument));
  linear_thread = t;
  int seen = 0;
  for (;;) {
    int go;
    while ((go = workers[t].go.load(std::memory_order_acquire)) == seen) futex_wait(&workers[t].go, seen);
    seen = go;
    if (stopping) return nullptr;
    run_blocks(t);
    if (finished.fetch_add(1, std::memory_order_acq_rel) + 1 == launch.threads) futex_wake(&finished, 1);
  }
}

static bool grow_pool(int threads) {
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setstacksize(&attributes, STACK_BYTES);
  for (; pool_size < threads; pool_size++) {
    workers[pool_size].go.store(0);   /* what a new worker has seen: a pool released earlier left counts */
    if (pthread_create(&workers[pool_size].handle, &attributes, worker_main,
                       reinterpret_cast<void *>(intptr_t(pool_size))) != 0) {
      break;
    }
  }
  pthread_attr_destroy(&attributes);
  return pool_size >= threads;
}

/* Ends the pool's threads (after a program's last launch, so idle threads never pile up). */
static void release_pool() {
  stopping = true;
  for (int t = 0; t < pool_size; t++) {
    workers[t].go.fetch_add(1, std::memory_order_release);
    futex_wake(&workers[t].go, 1);
  }
  for (int t = 0; t < pool_size; t++) pthread_join(workers[t].handle, nullptr);
  pool_size = 0;
  stopping = false;
}

/* Run `kernel` over the grid: blocks in order, each as `block` real threads. Returns 0, or -1
   with the reason in error_message. */
static int run(const char *name, void (*kernel)(void **), void **buffers, const long long *dims,
               long long shared_bytes, bool blocks_share_nothing) {
  kernel_name = name;
  broken.store(false);
  error_message[0] = 0;
  const long long blocks = dims[0] * dims[1] * dims[2], threads = dims[3] * dims[4] * dims[5];
  if (blocks == 0 || threads == 0) return 0;
  if (dims[0] > 2147483647LL || dims[1] > 65535 || dims[2] > 65535 || dims[3] > 1024 || dims[4] > 1024 ||
      dims[5] > 64) {
    std::snprintf(error_message, sizeof error_message,
                  "kernel %s: grid (%lld, %lld, %lld) block (%lld, %lld, %lld) is past CUDA's limits (grid "
                  "x < 2^31, y and z <= 65535; block x and y <= 1024, z <= 64)",
                  name, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]);
    return -1;
  }
  if (threads > MAX_THREADS || shared_bytes > SHARED_CAPACITY || shared_bytes < 0) {
    std::snprintf(error_message, sizeof error_message,
                  "kernel %s: a block of %lld threads with %lld bytes of dynamic shared memory is more than "
                  "CUDA allows (%d threads, %ld bytes)", name, threads, shared_bytes, MAX_THREADS, SHARED_CAPACITY);
    return -1;
  }
  if (!grow_pool(static_cast<int>(threads))) {
    std::snprintf(error_message, sizeof error_message, "kernel %s: could not start %lld threads", name, threads);
    return -1;
  }
  gridDim = {static_cast<unsigned int>(dims[0]), static_cast<unsigned int>(dims[1]), static_cast<unsigned int>(dims[2])};
  blockDim = {static_cast<unsigned int>(dims[3]), static_cast<unsigned int>(dims[4]), static_cast<unsigned int>(dims[5])};
  launch = {kernel, buffers, blocks, static_cast<int>(threads), shared_bytes, blocks_share_nothing};
  block_barrier.reset(launch.threads);
  for (int warp = 0; warp * WARP < launch.threads; warp++) warp_barriers[warp].reset(warp_size(warp));
  std::memset(dynamic_shared, 0xff, shared_bytes);
  finished.store(0);
  for (int t = 0; t < launch.threads; t++) {
    workers[t].go.fetch_add(1, std::memory_order_release);
    futex_wake(&workers[t].go, 1);
  }
  int done;
  while ((done = finished.load(std::memory_order_acquire)) != launch.threads) futex_wait(&finished, done);
  return broken.load() ? -1 : 0;
}

}  // namespace graphc_emulation

/* ---- synchronization ------------------------------------------------------------------------------- */
static inline void __syncthreads() { graphc_emulation::block_barrier.wait("__syncthreads()"); }

template <typename T> static inline T __shfl_down_sync(unsigned int mask, T value, unsigned int offset) {
  static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
  (void)mask;   /* graphc's kernels shuffle whole warps */
  using namespace graphc_emulation;
  const int lane = linear_thread % WARP, warp = linear_thread / WARP;
  std::memcpy(warp_slots[warp][lane], &value, sizeof(T));
  warp_barriers[warp].wait("__shfl_down_sync (before reading)");
  T result = value;
  if (lane + static_cast<int>(offset) < warp_size(warp)) std::memcpy(&result, warp_slots[warp][lane + offset], sizeof(T));
  warp_barriers[warp].wait("__shfl_down_sync (after reading)");   /* no lane overwrites a slot still being read */
  return result;
}

/* ---- atomics ----------------------------------------------------------------------------------------- */
template <typename T> static inline T graphc_emulated_atomic_add(T *address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
static inline float atomicAdd(float *address, float value) { return graphc_emulated_atomic_add(address, value); }
static inline double atomicAdd(double *address, double value) { return graphc_emulated_atomic_add(address, value); }
static inline int atomicAdd(int *address, int value) { return graphc_emulated_atomic_add(address, value); }
static inline unsigned int atomicAdd(unsigned int *address, unsigned int value) {
  return graphc_emulated_atomic_add(address, value);
}
static inline unsigned long long atomicAdd(unsigned long long *address, unsigned long long value) {
  return graphc_emulated_atomic_add(address, value);
}
static inline unsigned long long atomicCAS(unsigned long long *address, unsigned long long expected,
                                           unsigned long long desired) {
  std::atomic_ref<unsigned long long>(*address).compare_exchange_strong(expected, desired);
  return expected;   /* the old value, as CUDA's atomicCAS returns it */
}

/* ---- the prelude's own declarations -------------------------------------------------------------------
   The CUDA prelude includes <stdint.h> where __CUDACC_RTC__ is not defined (already included above,
   so int64_t is glibc's `long`, as under nvcc); its dynamic shared memory is one per-block buffer. */
#define GRAPHC_DYNAMIC_SHARED(type, name) type *name = reinterpret_cast<type *>(graphc_emulation::dynamic_shared)

#endif
