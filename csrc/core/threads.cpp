#include "core/threads.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LOWBIT_PAUSE() _mm_pause()
#else
#define LOWBIT_PAUSE() ((void)0)
#endif

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "lowbit/lowbit.h"

namespace lowbit {
namespace {

thread_local bool t_inside_pool = false;

// A GEMV of 4096 x 4096 at 4 bits takes ~0.3 ms; a condition-variable wake-up costs 5-50 us
// (more on a loaded machine). Workers therefore poll for a short, bounded time (kSpin) before
// they sleep, so back-to-back calls find them awake; the bound keeps a loaded 2-core machine
// from being starved by idle workers. Longer is not better: 150 us made back-to-back 4096x4096
// one-token GEMVs faster (w4a8 ~21 -> ~26 GB/s) but SmolLM2's decode, where torch's own threads
// run between our calls, 1.6-1.7x slower (w4a16 18-21 -> ~12 tokens/s, two alternating runs
// each on the development VM, ad hoc): the polling worker and torch's threads fought for the
// two cores.
constexpr auto kSpin = std::chrono::microseconds(30);

template <typename Pred>
bool spin_until(Pred done) {
  const auto end = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (done()) return true;
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= end) return false;
    LOWBIT_PAUSE();
  }
}

class Pool {
 public:
  ~Pool() { resize(0); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // n total threads including the caller.
  void resize(int n) {
    n = std::max(n, 1);
    if (n == size()) return;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto &t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    // Each worker starts from the current generation, so a job posted before it first waits
    // is still seen as new.
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, g = generation_.load()] { loop(g); });
  }

  void run(int64_t n_tasks, const std::function<void(int64_t)> &fn) {
    std::lock_guard<std::mutex> one_job(job_mu_);  // one job at a time from any caller thread
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      n_tasks_ = n_tasks;
      next_.store(0);
      active_.store(static_cast<int>(workers_.size()));
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work();
    if (!spin_until([this] { return active_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [this] { return active_.load() == 0; });
    }
    fn_ = nullptr;
  }

 private:
  void work() {
    t_inside_pool = true;
    for (int64_t t; (t = next_.fetch_add(1)) < n_tasks_;) (*fn_)(t);
    t_inside_pool = false;
  }

  void loop(uint64_t seen) {
    for (;;) {
      if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load() != seen; });
      }
      {
        // Taking the lock orders this thread after the poster's writes of fn_ / n_tasks_.
        std::lock_guard<std::mutex> lk(mu_);
        seen = generation_.load();
        if (stop_) return;
      }
      work();
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu_);  // pairs with the caller's wait: no lost wake-up
        done_cv_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, job_mu_;
  std::condition_variable cv_, done_cv_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  const std::function<void(int64_t)> *fn_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> active_{0};
};

std::atomic<int> g_requested{0};  // 0: not set, use hardware concurrency
std::mutex g_pool_mu;

Pool &pool() {
  static Pool p;
  return p;
}

int resolve(int n) {
  if (n > 0) return n;
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

// ---- A host's GNU OpenMP runtime (lowbit_use_openmp_runtime) ------------------------------
//
// Inside PyTorch, torch's own OpenMP threads keep spinning for a few ms after each torch op.
// A second pool on the same cores then waits for them: a 576x576 M=512 w4a16 GEMM took
// ~4.0 ms right after a torch op against ~2.2 ms on a team of torch's runtime, a 4096x4096
// M=64 one ~19 against ~15 (bench/results/thread_sharing.md), and a transformer layer is torch
// ops between every pair of lowbit calls. Running the tasks on the host runtime's threads
// (GOMP_parallel) shares one team, as torch's own ops do, so nothing is oversubscribed.
// The price: after ~20 ms or more without any parallel work the team's threads are asleep,
// and the first region pays their wake-up (0.5-7 ms in the same file, where the own pool's
// condition-variable wake-up cost ~0.5); torch's own first op after such a pause pays the
// same (64x576x576 fp32: 0.30 ms back to back, 0.78 after 20 ms, 1.8 after 50, ad hoc), and
// in a model that op comes first.
using GompParallel = void (*)(void (*)(void *), void *, unsigned, unsigned);
using OmpInParallel = int (*)();
std::atomic<GompParallel> g_gomp_parallel{nullptr};
std::atomic<OmpInParallel> g_omp_in_parallel{nullptr};

struct OmpJob {
  const std::function<void(int64_t)> *fn;
  int64_t n_tasks;
  std::atomic<int64_t> next{0};
};

void omp_body(void *p) {  // every thread of the team: the same dynamic hand-out as the pool's
  auto *job = static_cast<OmpJob *>(p);
  const bool outer = t_inside_pool;
  t_inside_pool = true;
  for (int64_t t; (t = job->next.fetch_add(1)) < job->n_tasks;) (*job->fn)(t);
  t_inside_pool = outer;
}

}  // namespace

int num_threads() { return resolve(g_requested.load()); }

void parallel_for(int64_t n_tasks, const std::function<void(int64_t)> &fn) {
  if (n_tasks <= 0) return;
  const int n = num_threads();
  const OmpInParallel in_parallel = g_omp_in_parallel.load();
  if (n_tasks == 1 || n == 1 || t_inside_pool || (in_parallel && in_parallel())) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  if (const GompParallel gomp_parallel = g_gomp_parallel.load()) {
    OmpJob job{&fn, n_tasks};
    gomp_parallel(omp_body, &job, static_cast<unsigned>(std::min<int64_t>(n, n_tasks)), 0);
    return;
  }
  std::lock_guard<std::mutex> lk(g_pool_mu);
  pool().resize(n);
  pool().run(n_tasks, fn);
}

}  // namespace lowbit

extern "C" void lowbit_set_num_threads(int n) { lowbit::g_requested.store(n > 0 ? n : 0); }
extern "C" int lowbit_get_num_threads(void) { return lowbit::num_threads(); }

extern "C" int lowbit_use_openmp_runtime(const char *path) {
  using namespace lowbit;
  if (!path) {
    g_gomp_parallel.store(nullptr);
    g_omp_in_parallel.store(nullptr);
    return 0;
  }
  // RTLD_NOLOAD: only a runtime the process has loaded already; never a second one.
  void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (!h) return 0;
  auto par = reinterpret_cast<GompParallel>(dlsym(h, "GOMP_parallel"));
  auto in_par = reinterpret_cast<OmpInParallel>(dlsym(h, "omp_in_parallel"));
  if (!par || !in_par) {
    dlclose(h);
    return 0;
  }
  g_omp_in_parallel.store(in_par);
  g_gomp_parallel.store(par);
  return 1;  // the handle stays open: the runtime must outlive every call
}
