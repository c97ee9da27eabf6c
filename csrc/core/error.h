// Thread-local last error for the C API, and a helper that records a formatted message.
#ifndef LOWBIT_CORE_ERROR_H
#define LOWBIT_CORE_ERROR_H

#include "lowbit/lowbit.h"

namespace lowbit {
// Records the message (printf-style) and returns `status`, so checks read `return fail(...)`.
lowbit_status fail(lowbit_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void clear_error();
}  // namespace lowbit
#endif
