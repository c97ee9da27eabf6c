// Threads for the CPU kernels: a small persistent pool of lowbit's own, or, once
// lowbit_use_openmp_runtime() has named a GNU OpenMP runtime the host already runs (the Python
// package passes torch's), a team of that runtime, so that lowbit and the host share one set
// of threads (threads.cpp says why). The own pool's workers sleep on a condition variable
// between jobs after a short bounded poll (<= 30 us; long spinning would starve a loaded
// 2-core machine), and the calling thread works too, so n threads means n-1 workers.
#ifndef LOWBIT_CORE_THREADS_H
#define LOWBIT_CORE_THREADS_H

#include <cstdint>
#include <functional>

namespace lowbit {
// Runs fn(task) for task in [0, n_tasks) on up to get_num_threads() threads and returns when
// all are done. Tasks are handed out dynamically (an atomic counter), so uneven tasks balance.
// Nested calls from inside a task run serially.
void parallel_for(int64_t n_tasks, const std::function<void(int64_t)> &fn);
int num_threads();
}  // namespace lowbit
#endif
