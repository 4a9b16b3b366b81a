"""Power-loss simulation: record what each sync made durable, build the disk
images a power cut could leave, and check recovery on every one of them
(docs/CRASH_SAFETY.md has the model and its limits).

One concern a module:

    shim.c, recording.py  the recorder (LD_PRELOAD): every sync's copy, every
                          directory listing, rename and unlink; read back
    writer.py             the child under the recorder: random multi-group
                          batches, each one recorded before it is written
    generation.py         one run of the writer in a directory, killed at a
                          random moment
    image.py              crash images drawn from a recording: pages old,
                          new, cut or torn; names durable or any later one
    checker.py            an image opened, read, written, reopened, in a
                          process of its own
    verdict.py            the recovered state against the model after every
                          prefix of the batches written
    chain.py              generations started from each other's images; the
                          failures saved, minimised (`python -m
                          tests.powerloss.chain`)

test_powerloss.py runs them on the engine, test_pysyncobj_powerloss.py on a
PySyncObj node (pysyncobj_node.py).
"""
