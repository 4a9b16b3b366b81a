/* segment.c — creating, mapping and closing segment files. */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "failpoint.h"
#include "format.h"
#include "pyraftlog.h"

void prl_segment_name(uint64_t seq, char *buf) {
    snprintf(buf, 24, "%016" PRIx64 ".seg", seq);
}

/* A writable mapping is written front to back in small appends, each synced
 * soon after.  With the default readahead, write faults fill the page cache
 * in ever larger folios, every store dirties a whole folio, and each
 * fdatasync writes ~1 MiB however little was appended (measured: 50x the
 * payload; perf/mmap_write_amp.py).  MADV_RANDOM keeps faults to single
 * pages: 1.45x.  Read-only mappings (recovery scans) keep readahead. */
static void *map_rw(size_t size, int fd) {
    int fp = prl_failpoint("segment::mmap");
    if (fp) { errno = fp; return MAP_FAILED; }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base != MAP_FAILED) madvise(base, size, MADV_RANDOM);
    return base;
}

/* The bytes of a log directory are not trusted (SECURITY.md), and neither
 * are its names: a symbolic link planted under a segment's name must not
 * make the log read or write a file elsewhere (O_NOFOLLOW), a FIFO must not
 * block the open (O_NONBLOCK; it has no effect on a regular file, and it is
 * cleared again below) and a terminal must not become ours (O_NOCTTY).  What
 * opens is then checked to be a regular file before it is mapped.
 * Returns the descriptor or a negative status. */
static int open_existing(int dirfd, const char *name, int flags) {
    struct stat st;
    int fp = prl_failpoint("segment::open");
    if (fp) return -fp;
    int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return errno == ELOOP ? PRL_E_NOT_REGULAR : -errno;
    if (fstat(fd, &st) < 0) { int e = errno; close(fd); return -e; }
    if (!S_ISREG(st.st_mode)) { close(fd); return PRL_E_NOT_REGULAR; }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

void prl_free_name(uint64_t id, char *buf) {
    snprintf(buf, 24, "%016" PRIx64 ".free", id);
}

void prl_segment_write_header(prl_segment *seg, uint64_t seq, uint64_t first_lsn) {
    struct prl_segment_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, PRL_SEGMENT_MAGIC, 8);
    h.version = PRL_FORMAT_VERSION;
    h.header_size = PRL_SEGMENT_HEADER_SIZE;
    h.seq = seq;
    h.first_lsn = first_lsn;
    h.segment_size = seg->size;
    h.crc = prl_crc32c(0, &h, offsetof(struct prl_segment_header, crc));
    memcpy(seg->base, &h, sizeof h);
    /* a recycled file: its first batch slot must not look like a batch */
    memset(seg->base + PRL_SEGMENT_HEADER_SIZE, 0, PRL_BATCH_HEADER_SIZE);
    seg->seq = seq;
    seg->used = PRL_SEGMENT_HEADER_SIZE;
    seg->live = 0;
    seg->first_lsn = first_lsn;
    seg->last_lsn = first_lsn - 1;
}

/* Creates `name`, allocates it in full (never sparse: a store into a hole of
 * a shared mapping SIGBUSes on a full disk) and maps it read-write. */
static int create_mapped(int dirfd, const char *name, uint64_t size, uint32_t mode,
                         prl_segment **out) {
    int fp, err;
    uint8_t *base = MAP_FAILED;
    /* O_EXCL never follows a symbolic link: a name planted meanwhile fails */
    int fd = FAIL_OR("segment::create",
                     openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                            (mode_t)(mode ? mode : 0600)));
    if (fd < 0) return -errno;
    /* posix_fallocate returns the error instead of setting errno */
    err = prl_failpoint("segment::fallocate");
    if (!err) err = posix_fallocate(fd, 0, (off_t)size);
    if (err) goto fail;
    base = map_rw(size, fd);
    if (base == MAP_FAILED) { err = errno; goto fail; }
    prl_segment *seg = calloc(1, sizeof *seg);
    if (!seg) { err = ENOMEM; goto fail; }
    seg->fd = fd;
    seg->base = base;
    seg->size = size;
    seg->writable = 1;
    *out = seg;
    return 0;
fail:
    if (base != MAP_FAILED) munmap(base, size);
    close(fd);
    unlinkat(dirfd, name, 0); /* a half-made file must not outlive the error */
    return -err;
}

/* Writes zeros over the whole file and syncs them: 0 or an errno.  Batches
 * are later pwritten into blocks that were written before, so a batch's
 * fdatasync flushes its own pages only and never first converts unwritten
 * extents (1.7x the cost: perf/write_method.py).  A recycled file needs
 * none of this: its first life wrote it. */
static int zero_fill(int fd, uint64_t size) {
    static const uint8_t zeros[1 << 16];
    for (uint64_t off = 0; off < size;) {
        uint64_t n = size - off < sizeof zeros ? size - off : sizeof zeros;
        ssize_t k = pwrite(fd, zeros, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return k < 0 ? errno : EIO;
        off += (uint64_t)k;
    }
    return fdatasync(fd) < 0 ? errno : 0;
}

int prl_segment_prepare(int dirfd, uint64_t id, uint64_t size, uint32_t mode,
                        prl_segment **out) {
    char name[24];
    prl_free_name(id, name);
    int rc = create_mapped(dirfd, name, size, mode, out);
    if (rc) return rc;
    (*out)->seq = id;
    int err = prl_failpoint("segment::zero_fill");
    if (!err) err = zero_fill((*out)->fd, size);
    if (err) {
        prl_segment_close(*out);
        *out = NULL;
        unlinkat(dirfd, name, 0); /* a half-made file must not outlive the error */
        return -err;
    }
    return 0;
}

int prl_segment_create(int dirfd, uint64_t seq, uint64_t size, uint64_t first_lsn,
                       uint32_t mode, prl_segment **out) {
    char name[24];
    int fp, err;
    prl_segment *seg;
    prl_segment_name(seq, name);
    int rc = create_mapped(dirfd, name, size, mode, &seg);
    if (rc) return rc;
    prl_segment_write_header(seg, seq, first_lsn);
    /* The header and the allocation must be durable, and the new name in the
     * directory too, before any batch in this file is acknowledged. */
    if (FAIL_OR("segment::header_sync", fdatasync(seg->fd)) < 0 ||
        FAIL_OR("dir::fsync", fsync(dirfd)) < 0) {
        err = errno;
        prl_segment_close(seg);
        unlinkat(dirfd, name, 0);
        return -err;
    }
    *out = seg;
    return 0;
}

int prl_segment_open_rw(int dirfd, const char *name, uint64_t id, prl_segment **out) {
    struct stat st;
    int fd = open_existing(dirfd, name, O_RDWR);
    if (fd < 0) return fd;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || (uint64_t)st.st_size > PRL_MAX_SEGMENT_SIZE) {
        close(fd);
        return -EINVAL;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t *base = map_rw(size, fd);
    if (base == MAP_FAILED) {
        int e = errno;
        close(fd);
        return -e;
    }
    prl_segment *seg = calloc(1, sizeof *seg);
    if (!seg) {
        munmap(base, size);
        close(fd);
        return -ENOMEM;
    }
    seg->seq = id;
    seg->fd = fd;
    seg->base = base;
    seg->size = size;
    seg->writable = 1;
    *out = seg;
    return 0;
}

int prl_segment_open(int dirfd, uint64_t seq, prl_segment **out) {
    char name[24];
    struct stat st;
    prl_segment_name(seq, name);
    int fd = open_existing(dirfd, name, O_RDONLY);
    if (fd < 0) return fd;
    if (fstat(fd, &st) < 0) { int e = errno; close(fd); return -e; }
    uint8_t *base = NULL;
    uint64_t size = (uint64_t)st.st_size;
    if (size > PRL_MAX_SEGMENT_SIZE) size = PRL_MAX_SEGMENT_SIZE; /* file size not trusted */
    if (size > 0) {
        int fp = prl_failpoint("segment::mmap");
        base = fp ? MAP_FAILED : mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) { int e = fp ? fp : errno; close(fd); return -e; }
    }
    prl_segment *seg = calloc(1, sizeof *seg);
    if (!seg) {
        if (base) munmap(base, size);
        close(fd);
        return -ENOMEM;
    }
    seg->seq = seq;
    seg->fd = fd;
    seg->base = base;
    seg->size = size;
    seg->used = size;
    *out = seg;
    return 0;
}

int prl_segment_make_writable(int dirfd, prl_segment *seg, const char *name) {
    int fd = open_existing(dirfd, name, O_RDWR);
    if (fd < 0) return fd;
    uint8_t *base = map_rw(seg->size, fd);
    if (base == MAP_FAILED) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (seg->base) munmap(seg->base, seg->size);
    close(seg->fd);
    seg->fd = fd;
    seg->base = base;
    seg->writable = 1;
    return 0;
}

void prl_segment_close(prl_segment *seg) {
    if (!seg) return;
    if (seg->base && seg->size) munmap(seg->base, seg->size);
    close(seg->fd);
    free(seg);
}
