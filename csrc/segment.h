/* segment.h — one preallocated, memory-mapped segment file. */
#ifndef PRL_SEGMENT_H
#define PRL_SEGMENT_H

#include <stdint.h>

typedef struct prl_segment {
    uint64_t seq;
    int fd;
    uint8_t *base;     /* mapping of the whole file */
    uint64_t size;     /* mapped bytes (the file's size) */
    int writable;
    int recycled;      /* a free file that had a life before (stats) */
    /* The fields below are guarded by prl_log.mu. */
    uint64_t used;     /* bytes holding header and batches */
    uint64_t live;     /* bytes of records still needed by some group */
    uint64_t first_lsn, last_lsn; /* last_lsn = first_lsn - 1 while empty */
    uint64_t freed_lsn; /* written_lsn when a record in it was last released:
                           the batch that made it unneeded; it may be recycled
                           only once that batch is durable */
    int dirty;         /* written since the flusher last synced it: on the
                          log's dirty list (dirty_next) */
    uint32_t pins;     /* users outside mu: the flusher syncing it, a read or a
                          copy-write copying out of it.  A pinned segment stays
                          mapped and open, and is neither recycled nor detached;
                          the bytes below `used` never change while it lives. */
    struct prl_segment *dirty_next; /* the log's list of dirty segments */
    struct prl_segment *sync_next;  /* the flusher's private list while syncing */
} prl_segment;

void prl_segment_name(uint64_t seq, char *buf /* OUT: >= 24 bytes */);
void prl_free_name(uint64_t id, char *buf /* OUT: >= 24 bytes */);
/* Creates free file `<id>.free` with permission bits `mode` (0: 0600),
 * allocated in full and mapped read-write.  No sync: its name and
 * allocation become durable when it joins the log. */
int prl_segment_prepare(int dirfd, uint64_t id, uint64_t size, uint32_t mode,
                        prl_segment **out /* OUT */);
/* Writes a segment header for (seq, first_lsn) into the mapping. */
void prl_segment_write_header(prl_segment *seg, uint64_t seq, uint64_t first_lsn);
/* Creates `<seq>.seg` (permission bits `mode`, 0: 0600), allocates it in full (never sparse: a store into a hole
 * of a shared mapping SIGBUSes on a full disk), maps it, writes the header,
 * syncs the file and then the directory. */
int prl_segment_create(int dirfd, uint64_t seq, uint64_t size, uint64_t first_lsn,
                       uint32_t mode, prl_segment **out /* OUT */);
/* Existing files are opened relative to the directory, never through a
 * symbolic link and never blocking (a FIFO planted under a segment's name);
 * anything but a regular file is PRL_E_NOT_REGULAR. */
/* Maps an existing segment read-only, whatever its bytes say. */
int prl_segment_open(int dirfd, uint64_t seq, prl_segment **out /* OUT */);
/* Maps an existing file `name` read-write (a free file). */
int prl_segment_open_rw(int dirfd, const char *name, uint64_t id, prl_segment **out /* OUT */);
/* Re-maps an opened segment read-write, to continue writing after recovery. */
int prl_segment_make_writable(int dirfd, prl_segment *seg, const char *name);
void prl_segment_close(prl_segment *seg);

#endif
