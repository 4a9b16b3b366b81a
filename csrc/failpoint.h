/* failpoint.h — test hooks that make a named system call fail. */
#ifndef PRL_FAILPOINT_H
#define PRL_FAILPOINT_H

#include <stdint.h>

/* errno to fail with if failpoint `name` is armed (consumes one hit), else 0 */
int prl_failpoint(const char *name);

/* A system call that fails with the failpoint's errno when `point` is armed:
 * -1 with errno set, else the call's own result.  Needs `int fp` in scope. */
#define FAIL_OR(point, call) (((fp = prl_failpoint(point)) != 0) ? (errno = fp, -1) : (call))

#endif
