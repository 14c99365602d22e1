/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_SNAP_H
#define PYSCOPE_SNAP_H

/*
 * The snapshot data model: what `pyscope dump` prints and what the writers (text, JSON) and the
 * TUI consume. Pure data, no target access. A snapshot owns all its memory (arrays and strings,
 * allocated from the snapshot's own arena) and is freed with snap_free. Strings are valid UTF-8
 * (target bytes that are not are replaced with U+FFFD when copied in).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"

/* A local variable of a frame (dump --locals): a bounded, safe repr read from the target. */
struct snap_var {
    const char *name;
    const char *kind; /* "arg", "local", "cell" or "free" */
    const char *type; /* the value's type name; NULL when unreadable */
    const char *repr; /* bounded repr ("[1, 2, ...] (len 1000)", "<Foo at 0x...>"); NULL
                              when unreadable or unbound */
    bool unreadable;  /* the read failed: shown as such, never an error for the dump */
};

/* Who owns a frame, as the snapshot says it for every version (the walker maps CPython's
 * _frameowner byte through the layout's frame_owner_* values). */
enum snap_owner {
    SNAP_OWNER_THREAD = 0,       /* on the thread's data stack */
    SNAP_OWNER_GENERATOR = 1,    /* a generator's or coroutine's */
    SNAP_OWNER_FRAME_OBJECT = 2, /* kept alive by a frame object (a traceback's) */
};

struct snap_frame {
    const char *function; /* co_name */
    const char *qualname; /* co_qualname */
    const char *file;     /* co_filename */
    int line;             /* -1 when unknown */
    int end_line;
    int col; /* 0-based UTF-8 byte column as co_positions(); -1 unknown */
    int end_col;
    uint64_t code_addr;    /* target address of the code object */
    bool is_entry;         /* first frame of a C->Python entry (a native frame sits below it) */
    enum snap_owner owner; /* who owns the frame (CPython's byte, version-free) */
    size_t nvars;          /* locals (only with --locals) */
    struct snap_var *vars;
};

/* An exception of a thread: being raised (in flight) or being handled in an except block. */
struct snap_exc {
    const char *type;    /* qualified type name ("ValueError", "json.decoder.JSONDecodeError") */
    const char *message; /* str of args[0] when it is a str, bounded; NULL otherwise */
    size_t ntb;          /* traceback entries, outermost first (traceback order) */
    struct snap_frame *tb;
    const char *cause_type;   /* __cause__'s type name, NULL if none */
    const char *context_type; /* __context__'s type name, NULL if none */
};

/* One native (C) frame of a thread (dump --native), innermost first. */
struct snap_native_frame {
    uint64_t pc;
    const char *symbol; /* NULL when unknown */
    uint64_t offset;    /* pc - symbol start */
    const char *module; /* the mapped file holding pc, NULL when anonymous */
    const char *insn;   /* disassembly of the instruction at pc (-v), NULL otherwise */
    int python_frame;   /* index into the thread's frames[] of the Python frames this eval
                              call runs (the first of them, innermost), -1 for plain C */
    /* Nested interpreters (one OS thread running interpreter 2 from inside interpreter 1):
     * an eval call that runs another thread state's frames: that thread's index in
     * snap.threads and the index of the run's first frame in its frames[]; -1 otherwise. */
    int nested_thread;
    int nested_frame;
};

enum snap_thread_status {
    SNAP_THREAD_OK = 0,
    SNAP_THREAD_INCONSISTENT, /* the stack kept changing while read; frames may be partial */
    SNAP_THREAD_TRUNCATED,    /* deeper than the frame cap; the innermost frames are kept */
    SNAP_THREAD_ERROR,        /* reading failed; see error */
    SNAP_THREAD_PARTIAL,      /* the innermost frames kept changing: frames holds only the
                                 outer ones two reads agreed on; error says so */
};

/* OS-level view of a thread from /proc/PID/task/TID. */
struct snap_os {
    char state;            /* stat field 3: R, S, D, T, t, Z, X; '?' unknown */
    char wchan[48];        /* kernel wait channel ("" unknown, "0" none) */
    char comm[32];         /* the OS thread name (task comm, pthread_setname_np; at most 15
                              bytes), "" unknown (a core, a fixture) */
    long syscall;          /* current syscall number, -1 running, -2 unknown */
    uint64_t syscall_arg0; /* its first argument (a futex's address), 0 when unknown */
    uint64_t utime_ticks;  /* user CPU, clock ticks */
    uint64_t stime_ticks;
};

struct snap_thread {
    bool os_only;        /* an OS thread with no Python thread state (C code's own thread): no
                           thread_id, interpreter, frames or exceptions; os and native only */
    uint64_t thread_id;  /* threading.get_ident() (pthread_t) */
    pid_t native_id;     /* kernel TID */
    const char *name;    /* threading name, or NULL when the thread has none */
    const char *os_name; /* OS thread name (os.comm as valid UTF-8), NULL when unknown */
    uint64_t tstate_addr;
    int64_t interp_id;
    bool gil;             /* holds the GIL */
    bool active;          /* 3.12+: _status.active (attached to the interpreter) */
    const char *activity; /* derived: "running", "waiting for the GIL", "idle: sleep", ... */
    struct snap_os os;
    enum snap_thread_status status;
    const char *error; /* when status is ERROR/INCONSISTENT: one sentence, else NULL */
    int attempts;      /* reads needed for a consistent stack */
    size_t nframes;
    struct snap_frame *frames;    /* innermost first */
    struct snap_exc *exc_current; /* being raised right now, NULL if none */
    struct snap_exc *exc_handled; /* being handled in an except block, NULL if none */
    size_t nnative;               /* --native: the C stack, innermost first */
    struct snap_native_frame *native;
    const char *native_error; /* why the native stack is missing or partial, NULL if fine */
    uint64_t c_anchor; /* an address on the C stack inside the eval call running the innermost
                          frames (3.11/3.12 cframe, 3.13 entry shim), 0 unknown: orders the
                          thread states of nested interpreters on one OS thread */
};

/* asyncio (dump --tasks): a task's state; RUNNING = the current task of its loop. */
enum snap_task_state {
    SNAP_TASK_PENDING = 0,
    SNAP_TASK_RUNNING,
    SNAP_TASK_DONE,
    SNAP_TASK_CANCELLED,
};

/* What a suspended task waits for. */
enum snap_await_kind {
    SNAP_AWAIT_NONE = 0, /* nothing (running, done, or ready to run) */
    SNAP_AWAIT_TASK,     /* another task (awaits_task says which when it is listed) */
    SNAP_AWAIT_FUTURE,   /* a future (awaits_type names its type) */
    SNAP_AWAIT_SLEEP,    /* asyncio.sleep()'s future */
    SNAP_AWAIT_OTHER,    /* some other awaitable at the end of the chain (awaits_type) */
};

struct snap_task {
    uint64_t addr;      /* the Task object */
    uint64_t loop_addr; /* its event loop */
    const char *name;   /* get_name(): the name, or "Task-<n>" for unnamed 3.12+ tasks */
    enum snap_task_state state;
    size_t nframes;
    struct snap_frame *frames;   /* coroutine chain, innermost first (running: the thread's
                                     frames from the innermost out to the task's coroutine) */
    bool chain_truncated;        /* deeper than the chain cap */
    enum snap_await_kind awaits; /* what it waits for */
    uint64_t awaits_addr;        /* the awaited object, 0 if none */
    const char *awaits_type;     /* its type name, NULL if none */
    long awaits_task;            /* index into snap_tasks.tasks of the awaited task, -1 */
    long thread;                 /* running: index into snap.threads of its loop's thread */
    long thread_frame;           /* running: index into that thread's frames of the task's
                                     coroutine frame; -1 otherwise or when not found */
    bool in_cycle;               /* waits, through the await graph, on itself: a deadlock */
    const char *error;           /* the chain could not be read: one sentence, else NULL */
};

/* An edge of the await graph: tasks[from] waits for tasks[to]. */
struct snap_await_edge {
    size_t from, to;
    const char *via; /* "await" (the awaited future is that task), "taskgroup" (a TaskGroup
                        waiting for its children), "gather" (a gather() future) */
};

struct snap_tasks {
    size_t ntasks; /* tasks listed: at most the cap, running first, then pending */
    struct snap_task *tasks;
    size_t nedges;
    struct snap_await_edge *edges;
    size_t found;       /* distinct tasks found in asyncio's registries */
    size_t by_state[4]; /* found tasks by enum snap_task_state */
    size_t loops;       /* distinct event loops of the found tasks */
    bool capped;        /* found > ntasks (--max-tasks) or the registry scan hit its cap */
    const char *error;  /* why there is no task list (asyncio not imported, ...), else NULL */
};

struct snap {
    pid_t pid;
    char python_version[32];
    uint32_t version_hex;
    const char *exe;     /* /proc/PID/exe target */
    const char *image;   /* image holding the runtime */
    const char *cmdline; /* spaces between arguments, bounded */
    bool blocking;       /* the threads were stopped while read */
    bool blocking_auto;  /* --blocking=auto stopped them: reads without stopping kept tearing */
    double timestamp;    /* CLOCK_REALTIME seconds when the snapshot was taken */
    double cpu_user_s;   /* process CPU from /proc/PID/stat */
    double cpu_system_s;
    uint64_t rss_bytes;
    uint64_t gil_switches; /* switch_number of the main interpreter's GIL */
    double read_seconds;   /* time pyscope spent taking the snapshot */
    uint64_t read_calls;   /* memory-source calls used */
    size_t nthreads;
    struct snap_thread *threads;
    struct snap_tasks *tasks; /* dump --tasks: asyncio tasks; NULL when not asked for */
    struct snap_arena *arena; /* owns every string and array above */
};

/* Allocate an empty snapshot. -ENOMEM. */
int snap_new(struct snap **out, struct ps_err *err) PS_WARN_UNUSED;

/* Free everything; NULL-safe. */
void snap_free(struct snap *s);

/*
 * Arena helpers: copy n bytes as a NUL-terminated valid-UTF-8 string owned by s (invalid
 * sequences become U+FFFD); allocate zeroed memory owned by s. Return NULL on ENOMEM.
 */
const char *snap_strndup(struct snap *s, const char *str, size_t n);
const char *snap_strdup(struct snap *s, const char *str);
void *snap_alloc(struct snap *s, size_t size);

/*
 * The OS name of t (os_name) when it says more than its Python name: NULL when unknown, when it
 * is the name every thread inherits (the main thread's, i.e. the process's: threads nobody
 * named), or when it is a prefix of the Python name (the kernel keeps 15 bytes). For the text
 * and TUI views; JSON keeps os_name as read. Borrowed from s.
 */
const char *snap_thread_os_name(const struct snap *s, const struct snap_thread *t);

#endif
