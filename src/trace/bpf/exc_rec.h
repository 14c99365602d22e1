/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_BPF_EXC_REC_H
#define PYSCOPE_BPF_EXC_REC_H

/*
 * The contract between the kernel-side exception reader (src/trace/bpf/exc.bpf.c) and its user-space
 * loader (src/trace/bpf_exc.c): the configuration the loader writes into the program's read-only data
 * before loading it (offsets from the per-version layout table and a few addresses of the
 * target; nothing version-specific is compiled into the program), the records the program puts
 * into its ring buffer, and the counters it keeps. Included by both sides: fixed-width kernel
 * types only, no pointers.
 */

#include <linux/types.h>

#define EXC_BPF_MAX_FRAMES  32   /* frames sent per new raise (TRACER_MAX_FRAMES) */
#define EXC_BPF_MAX_STEPS   48   /* frame-chain links followed (shims are skipped) */
#define EXC_BPF_MAX_RANGES  16   /* object byte ranges copied per new raise */
#define EXC_BPF_BLOB        2048 /* bytes of those ranges per record */
#define EXC_BPF_RANGE_MAX   1024 /* bytes per range (a message of 200 UCS4 chars is 800) */
#define EXC_BPF_FRAME_BLOCK 128  /* bytes of an interpreter frame read at once (fields below 120) */
#define EXC_BPF_TYPE_MAX    64   /* bytes of a --type filter (the part after its last dot) */
#define EXC_BPF_THREADS     4096 /* threads in the tid maps */
#define EXC_BPF_SITES       8192 /* (type, code, instruction) raise sites counted exactly */
#define EXC_BPF_RING_KEEP   4    /* 1/4 of the ring is kept for sites' first raises */
#define EXC_BPF_EXC_WORDS   16   /* an exception's first words read at once (through traceback) */
/* CODE records (a code object user space has not resolved yet, copied at the raise) */
#define EXC_BPF_CODES          16384 /* code objects in the known_codes map */
#define EXC_BPF_NEW_CODES      8     /* CODE records sent per raise at most */
#define EXC_BPF_CODE_RANGES    16    /* ranges per CODE record (9 used) */
#define EXC_BPF_CODE_BLOB      8192  /* bytes of those ranges per CODE record */
#define EXC_BPF_CODE_RANGE_MAX 4096  /* bytes per range of a CODE record */
#define EXC_BPF_CODE_STR_MAX   512   /* bytes of a name's text copied (longer: read live) */
#define EXC_BPF_CODE_HDR_MAX   256   /* bytes of a code header (CODE_HEADER_MAX) */
#define EXC_BPF_CODE_SMALL_HDR 64    /* bytes of a str or bytes header at most */
/* a raised static type new to user space: its tp_name's bytes copied, as many as the describer
 * reads at once (EXC_TYPE_MAX - 1, cut at a page end: then two ranges) */
#define EXC_BPF_TYPES     1024
#define EXC_BPF_TYPE_NAME 95

/* Per-target configuration (read-only data of the program). Offsets are bytes; -1 absent. */
struct exc_bpf_cfg {
    __s32 frameobj_f_frame;
    __s32 frameobj_f_back;          /* a frame object's caller, set when it stopped running */
    __s32 tb_frame;                 /* a traceback entry's frame object */
    __s32 tstate_current_exception; /* 3.12+ */
    __s32 tstate_curexc_type;       /* 3.11 (value and traceback follow it) */
    __s32 tstate_thread_id;
    __s32 tstate_native_thread_id;
    __s32 frame_code, frame_previous, frame_instr, frame_owner;
    __s32 frame_owner_cstack; /* -1: the version has no C-stack shim frames */
    __s32 object_type;
    __s32 exc_args, exc_traceback, exc_context, exc_cause;
    __s32 type_name, type_flags;
    __s32 tuple_items;
    __s32 str_length, str_state, str_ascii_data, str_compact_data;
    /* the str state word's bitfields (the layout's str_state_*): kind = state >> shift & mask */
    __u32 str_kind_shift, str_kind_mask, str_compact_mask, str_ascii_mask;
    /* thread-state fallback for a thread not in the tid map: 3.11 the runtime's current
     * thread state; 3.12+ the main interpreter's GIL holder (the raising thread holds it) */
    __s32 runtime_tstate_current;
    __s32 runtime_interpreters_main, interp_gil_ptr, gil_last_holder;
    __u64 runtime, none, tuple_type, unicode_type;
    __u64 base_exc_flag; /* Py_TPFLAGS_BASE_EXC_SUBCLASS: the table's tpflag_base_exc_subclass */
    /* the target's pid as pyscope sees it, and pyscope's pid namespace: a hit of another process
     * (a fork child still holding the uprobe until its first hit removes it) is ignored */
    __u32 tgid;
    __u64 pidns_dev, pidns_ino;
    __u32 type_filter_len; /* 0: no filter */
    char type_filter[EXC_BPF_TYPE_MAX];
    /* what the code resolver reads (CODE records): the header's length (code_header_len), the
     * name and location-table pointers in it, a bytes object's size and data */
    __u32 code_header_len;
    __s32 code_filename, code_name, code_qualname, code_linetable;
    __s32 varobject_size, bytes_sval;
    /* a raised type new to user space (known_types): its header's length from 0 through tp_name
     * and tp_flags (0: not sent), and Py_TPFLAGS_HEAPTYPE (heap types are named live) */
    __u32 type_hdr_len;
    __u64 heaptype_flag;
};

enum exc_bpf_kind {
    EXC_BPF_RAISE = 1, /* a new exception (or a re-raise): everything below is filled */
    EXC_BPF_PROP = 2,  /* the thread's open exception crossed one more frame: frames[0] is the
                          hit frame, frames[1] its caller (frame address only) */
    EXC_BPF_EXIT = 3,  /* a thread of the target exits (sched_process_exit, in that thread):
                          value/type are its in-flight exception then, 0 when none; truncated
                          holds an enum exc_bpf_exit_state. Header only (up to ranges). */
    EXC_BPF_EXEC = 4,  /* the target exec'd (sched_process_exec): the uprobe and every address
                          the program holds belong to the old image. Header only. */
    EXC_BPF_CODE = 5,  /* a struct exc_bpf_code_rec: a code object of the RAISE record that
                          follows it, not in known_codes, copied at the raise */
};

/* What an EXIT record could read of the exiting thread. */
enum exc_bpf_exit_state {
    EXC_BPF_EXIT_READ = 0,    /* its thread state, still naming it: value/type as read */
    EXC_BPF_EXIT_CLEARED = 1, /* read, but no longer its thread state: its Python part ended
                                 before the thread did (cleared, finalised) */
    EXC_BPF_EXIT_UNREAD = 2,  /* nothing readable (no thread state known, or the kernel had
                                 released the memory before the tracepoint) */
};

struct exc_bpf_frame {
    __u64 frame; /* _PyInterpreterFrame address */
    __u64 code;
    __u64 instr; /* the frame's instruction pointer field as read */
};

struct exc_bpf_range {
    __u64 addr;
    __u32 off; /* into blob */
    __u32 len;
};

struct exc_bpf_rec {
    __u32 kind; /* enum exc_bpf_kind */
    __u32 tid;
    __u64 time_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
    __u64 tstate, thread_id, iframe;
    __u64 value, type, traceback; /* as exc_raw (3.11: curexc_*; 3.12+: type of value) */
    __u32 nframes;
    __u32 truncated;
    __u32 nranges;
    __u32 blob_len;
    struct exc_bpf_range ranges[EXC_BPF_MAX_RANGES];
    struct exc_bpf_frame frames[EXC_BPF_MAX_FRAMES];
    __u8 blob[EXC_BPF_BLOB]; /* sent up to blob_len */
};

/*
 * A code object the program had not sent before (not in its known_codes map), copied at the
 * raise so that user space resolves it (file, names, location table) even when the target has
 * exited before the RAISE record is read: its header (cfg.code_header_len bytes), the
 * co_filename, co_name and co_qualname str headers and text (compact forms, up to
 * EXC_BPF_CODE_STR_MAX bytes), the co_linetable bytes header and data (up to
 * EXC_BPF_CODE_RANGE_MAX). Sent before its RAISE record; the program marks the code known once
 * sent, user space unmarks it when it could not resolve it or drops it from its cache.
 */
struct exc_bpf_code_rec {
    __u32 kind; /* EXC_BPF_CODE */
    __u32 nranges;
    __u64 code; /* the code object's address (ranges[0] is its header when read) */
    __u32 blob_len;
    __u32 pad;
    struct exc_bpf_range ranges[EXC_BPF_CODE_RANGES];
    __u8 blob[EXC_BPF_CODE_BLOB]; /* sent up to blob_len */
};

/* A raise site, counted for every raise in the `sites` map whatever the sampling. */
struct exc_bpf_site {
    __u64 type, code, instr; /* instr: the raising frame's instruction pointer field */
};

/* What user space sets while the program runs (the `ctl` array's one entry). */
struct exc_bpf_ctl {
    __u32 sample_every; /* 0 or 1: a record per raise; N: one raise in N (per CPU) gets its
                           record, the others are counted per site only (the budget) */
    __u32 pad;
};

/* Counters (a per-CPU array, summed by user space). */
enum exc_bpf_counter {
    EXC_BPF_CNT_HITS,            /* every uprobe hit */
    EXC_BPF_CNT_LOST,            /* records the ring buffer had no room for */
    EXC_BPF_CNT_LOST_RAISES,     /* ... of which new raises */
    EXC_BPF_CNT_FILTERED_RAISES, /* new raises dropped by the type filter */
    EXC_BPF_CNT_NO_TSTATE,       /* hits whose thread state could not be found */
    EXC_BPF_CNT_READ_ERRORS,     /* hits whose frame or exception could not be read */
    EXC_BPF_CNT_IN_FLIGHT,       /* exceptions already propagating when the probe was attached:
                                    first seen at a caller of their raise site, not reported */
    EXC_BPF_CNT_SAMPLED_OUT,     /* raises counted per site only (over the budget: no record) */
    EXC_BPF_CNT_NS,              /* nanoseconds spent in the uprobe program (bpf_ktime) */
    EXC_BPF_CNT_TICK,            /* raises taken past the sampling gate (its per-CPU clock) */
    EXC_BPF_CNT_CODES,           /* CODE records sent */
    EXC_BPF_CNT_N
};

#endif
