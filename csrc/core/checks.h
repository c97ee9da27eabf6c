// The argument checks of the C API (defined in api.cpp), shared by the CPU and CUDA entry
// points so that both reject a bad weight or buffer with the same status and message.
#ifndef LOWBIT_CORE_CHECKS_H
#define LOWBIT_CORE_CHECKS_H

#include <cstdint>

#include "lowbit/lowbit.h"

namespace lowbit {

bool valid_dtype(int dtype);
// Scheme, shape, group size, the pointers the scheme needs (and none it does not take).
lowbit_status check_weight(const lowbit_weight *w);
// M >= 0; `in` and y not NULL when M > 0; y's dtype known.
lowbit_status check_io(const void *in, const char *in_name, int64_t M, const void *y, lowbit_dtype y_dtype);

}  // namespace lowbit
#endif
