/* failpoint.h — test hooks that make a named system call fail. */
#ifndef PRL_FAILPOINT_H
#define PRL_FAILPOINT_H

#include <stdint.h>

/* errno to fail with if failpoint `name` is armed (consumes one hit), else 0 */
int prl_failpoint(const char *name);

#endif
