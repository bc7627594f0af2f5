// Container births: the syscall cascade of one OCI runtime invocation (runc, crun, ...),
// from the runtime's exec to the exec of the container's entrypoint.
//
// Tracepoints only. A birth starts when a task that is not tracked execs a program whose
// comm is one of `runtimes` (sched_process_exec). From then on that task and every task it
// forks, threads and processes alike (sched_process_fork), are tracked by thread id until
// they exit. The one raw_syscalls:sys_enter program does all the per-syscall work of
// tracked tasks: counts per syscall number, and, recognised by the architecture's numbers,
// namespace operations (clone, clone3, unshare, setns), the mount family, root switches
// (pivot_root, chroot), execs, and the opens, writes and closes of cgroup files. A tracked
// task that switched into the container's root, or descends from one that did, and then
// execs successfully is the container's entrypoint: the birth is over, and its tasks are
// forgotten on their next syscall or exit. The container is the cgroup its init joins
// (cgroup:cgroup_attach_task of a tracked task), resolved in user space.
//
// Cgroup writes are writes to file descriptors that a tracked process opened under
// CGROUP_ROOT, directly or relative to a directory descriptor opened there (runc opens
// /sys/fs/cgroup once and openat2()s below it). Descriptors are known per process (tgid);
// dup()ed or inherited ones are not followed. Writes to cgroup.procs and tasks move tasks;
// the first write to any other cgroup file starts the cgroup-limits phase. The descriptor
// an open returns comes from syscalls:sys_exit_open*.
//
// Per-syscall cost (measured by benchmarks/run on kernel 6.18): any program on a syscall
// tracepoint puts every task on the syscall-tracing slow path. A task that is not tracked
// pays one load from an array indexed by thread id (`tracking`, no hash lookup) in
// raw_syscalls:sys_enter and returns. Per-syscall enter tracepoints are not used: what they
// told is read from the syscall number. On the exit side only the open family's own
// tracepoints are attached: a program on raw_syscalls:sys_exit (or a raw sys_exit) would
// run on every syscall's return and costs about three times as much. The same filter on
// the raw sys_enter tracepoint costs about two thirds as much, but with it a 50-container
// storm lost 2 or 3 certificates after the nginx benchmark's rounds (twice; this program
// 50 of 50 in the same sequence), for a reason not yet found: it is not used until it is
// understood. The sched and cgroup tracepoints fire only
// on forks, execs, exits and cgroup changes. Rare lifecycle events (birth start, cgroup
// attach, namespace operation, entrypoint exec, cgroup mkdir) reach user space through a
// ring buffer; counts stay in maps.
//
// User space defines: MAX_TASKS, MAX_BIRTHS, MAX_COUNTS, PATH_LEN, PID_MAX (the size of
// `tracking`), the PHASE_* indices and N_PHASES, the EVENT_* and OP_* codes, and the
// running architecture's syscall numbers NR_* (-1 where the architecture has no such
// syscall, e.g. open(2) on arm64).

#define COMM_LEN 16
#define CGROUP_ROOT "/sys/fs/cgroup"
#define CGROUP_ROOT_LEN 14
#define PATH_BUF 256  // a power of two: indexes into it are masked for the verifier
#define NOT_CGROUP 0
#define CGROUP_CONTROL 1     // a limit or other control file
#define CGROUP_MEMBERSHIP 2  // cgroup.procs, tasks
#define AT_FDCWD_FD ((u32)-100)
// CLONE_NEW* flags: ns, cgroup, uts, ipc, user, pid, net; time (0x80) only for clone3 and
// unshare, where clone() keeps its exit signal in the low byte.
#define CLONE_NEW_MASK 0x7e020000ULL
#define CLONE_NEWTIME 0x80ULL

struct comm_key {
    char name[COMM_LEN];
};

struct task_info {
    u32 serial;     // the birth this task works for
    u32 in_rootfs;  // it, or an ancestor, switched into the container's root
};

struct birth {
    u64 start_ns;
    u64 end_ns;
    u64 milestone_ns[N_PHASES];     // when each phase was first reached; 0: never
    u64 phase_syscalls[N_PHASES];   // syscalls entered while each phase was the latest
    u32 phase;                      // the latest phase reached
    u32 done;                       // the entrypoint exec happened
    u32 mounts;
    u32 cgroup_writes;
    u32 execs;
    u32 root_pid;
};

struct count_key {
    u32 serial;
    u32 nr;
};

struct fd_key {
    u32 tgid;
    u32 fd;
};

struct exec_entry {
    u64 ts;      // when execve/execveat was entered
    u32 nr;
    u32 phase;   // the birth's phase then (tracked tasks)
};

struct cgroup_file {
    u32 serial;
    u32 kind;  // NOT_CGROUP, CGROUP_CONTROL, CGROUP_MEMBERSHIP
};

struct path_buf {
    char c[PATH_BUF];
};

struct event {
    u64 ts;
    u64 arg;    // attach: cgroup id; namespace: flags; entrypoint: exec entry ns; mkdir: id
    u64 arg2;   // entrypoint: cgroup v2 id of the entrypoint
    u32 kind;
    u32 serial;
    u32 pid;
    u32 aux;    // attach, mkdir: hierarchy id; namespace: OP_*; entrypoint: phase at entry
    char text[PATH_LEN];  // start: runtime comm; attach, mkdir: cgroup path
};

BPF_HASH(runtimes, struct comm_key, u8, 64);
BPF_HASH(tracked, u32, struct task_info, MAX_TASKS);
BPF_ARRAY(tracking, u32, PID_MAX);  // tid -> its birth's serial (0: none): the hot filter
BPF_HASH(births, u32, struct birth, MAX_BIRTHS);
BPF_HASH(syscall_counts, struct count_key, u64, MAX_COUNTS);
BPF_TABLE("lru_hash", u32, struct exec_entry, exec_entries, 4096);
BPF_TABLE("lru_hash", u32, struct cgroup_file, pending_opens, 4096);  // tid -> being opened
BPF_TABLE("lru_hash", struct fd_key, struct cgroup_file, cgroup_fds, 16384);
BPF_PERCPU_ARRAY(path_scratch, struct path_buf, 1);
BPF_PERCPU_ARRAY(serial_counter, u32, 1);
BPF_RINGBUF_OUTPUT(events, 256);  // 1 MiB: ~3600 events between two polls

static __always_inline void reach(struct birth *birth, u32 phase, u64 now)
{
    if (phase >= N_PHASES || birth->milestone_ns[phase])
        return;
    birth->milestone_ns[phase] = now;
    birth->phase = phase;
}

// Tracked tasks are in `tracked` (their state; user space lists it) and in `tracking`
// (what the syscall tracepoints test). A tid beyond PID_MAX cannot be tracked.
static __always_inline int track(u32 tid, struct task_info *info)
{
    u32 *slot = tracking.lookup(&tid);
    if (!slot || tracked.update(&tid, info))
        return -1;
    *slot = info->serial;
    return 0;
}

static __always_inline void untrack(u32 tid)
{
    u32 *slot = tracking.lookup(&tid);
    if (slot)
        *slot = 0;
    tracked.delete(&tid);
}

static __always_inline struct event *new_event(u32 kind, u32 serial, u32 pid, u64 ts)
{
    struct event *event = events.ringbuf_reserve(sizeof(struct event));
    if (!event)
        return 0;
    event->ts = ts;
    event->arg = 0;
    event->arg2 = 0;
    event->kind = kind;
    event->serial = serial;
    event->pid = pid;
    event->aux = 0;
    event->text[0] = 0;
    return event;
}

static __always_inline int is_write(long nr)
{
    return nr == NR_WRITE || nr == NR_PWRITE64 || nr == NR_WRITEV || nr == NR_PWRITEV ||
           nr == NR_PWRITEV2;
}

// Does the path that ends at path[end] end with the file name `name` (n characters)?
static __always_inline int names_file(const char *path, u32 end, const char *name, u32 n)
{
    if (end < n || end >= PATH_BUF)
        return 0;
#pragma unroll
    for (u32 i = 0; i < n; i++) {
        if (path[(end - n + i) & (PATH_BUF - 1)] != name[i])
            return 0;
    }
    return end == n || path[(end - n - 1) & (PATH_BUF - 1)] == '/';
}

// What this open(2)/openat(2)/openat2(2) names: a file under CGROUP_ROOT or not.
static __always_inline u32 cgroup_file_kind(long nr, u64 arg0, u64 arg1, u32 tgid)
{
    u32 dirfd = AT_FDCWD_FD;
    const char *path = (const char *)arg1;
    if (nr == NR_OPEN) {
        path = (const char *)arg0;
    } else {
        dirfd = (u32)arg0;
    }
    int zero = 0;
    struct path_buf *buf = path_scratch.lookup(&zero);
    if (!buf)
        return NOT_CGROUP;
    long len = bpf_probe_read_user_str(buf->c, PATH_BUF, path);
    if (len <= 1)
        return NOT_CGROUP;
    if (buf->c[0] != '/') {
        struct fd_key dir = {.tgid = tgid, .fd = dirfd};
        if (dirfd == AT_FDCWD_FD || !cgroup_fds.lookup(&dir))
            return NOT_CGROUP;
    } else {
        const char root[] = CGROUP_ROOT;
#pragma unroll
        for (int i = 0; i < CGROUP_ROOT_LEN; i++) {
            if (buf->c[i] != root[i])
                return NOT_CGROUP;
        }
        if (buf->c[CGROUP_ROOT_LEN] != '/' && buf->c[CGROUP_ROOT_LEN] != 0)
            return NOT_CGROUP;
    }
    u32 end = len - 1;  // len counts the NUL
    const char procs[] = "cgroup.procs";
    const char tasks[] = "tasks";
    if (names_file(buf->c, end, procs, sizeof(procs) - 1) ||
        names_file(buf->c, end, tasks, sizeof(tasks) - 1))
        return CGROUP_MEMBERSHIP;
    return CGROUP_CONTROL;
}

static __always_inline int is_mount_family(long nr)
{
    return nr == NR_MOUNT || nr == NR_UMOUNT2 || nr == NR_PIVOT_ROOT || nr == NR_MOVE_MOUNT ||
           nr == NR_FSOPEN || nr == NR_FSMOUNT || nr == NR_OPEN_TREE ||
           nr == NR_OPEN_TREE_ATTR || nr == NR_MOUNT_SETATTR;
}

static __always_inline void namespace_op(struct birth *birth, u32 serial, u32 op, u64 flags)
{
    u64 now = bpf_ktime_get_ns();
    reach(birth, PHASE_NAMESPACES, now);
    struct event *event = new_event(EVENT_NAMESPACE, serial, bpf_get_current_pid_tgid(), now);
    if (!event)
        return;
    event->arg = flags;
    event->aux = op;
    events.ringbuf_submit(event, 0);
}

// Everything a tracked task's syscall tells: its count, then what it does to the birth.
static __always_inline void tracked_syscall(long nr, u64 *arg, u64 pid_tgid)
{
    u32 tid = pid_tgid;
    struct task_info *task = tracked.lookup(&tid);
    if (!task) {
        untrack(tid);
        return;
    }
    u32 serial = task->serial;
    struct birth *birth = births.lookup(&serial);
    if (!birth || birth->done) {
        untrack(tid);  // its birth is over: forget the task
        return;
    }
    // The phase's count first, then the name's: user space reads the names first, so a
    // syscall counted by name is always in the phase counts it reads next.
    u32 phase = birth->phase;
    if (phase < N_PHASES)
        __sync_fetch_and_add(&birth->phase_syscalls[phase], 1);
    // Not atomic_increment: its insert of a new key loses the count when two threads
    // enter the same new syscall at once; lookup_or_try_init looks up the winner's entry.
    struct count_key key = {.serial = serial, .nr = (u32)nr};
    u64 zero = 0;
    u64 *count = syscall_counts.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);

    u32 tgid = pid_tgid >> 32;
    if (nr == NR_CLOSE) {
        struct fd_key fd = {.tgid = tgid, .fd = (u32)arg[0]};
        cgroup_fds.delete(&fd);
    } else if (is_write(nr)) {
        struct fd_key fd = {.tgid = tgid, .fd = (u32)arg[0]};
        struct cgroup_file *file = cgroup_fds.lookup(&fd);
        if (file) {
            __sync_fetch_and_add(&birth->cgroup_writes, 1);
            if (file->kind == CGROUP_CONTROL)
                reach(birth, PHASE_CGROUP_LIMITS, bpf_ktime_get_ns());
        }
    } else if (nr == NR_OPENAT || nr == NR_OPENAT2 || (NR_OPEN >= 0 && nr == NR_OPEN)) {
        struct cgroup_file open = {
            .serial = serial,
            .kind = cgroup_file_kind(nr, arg[0], arg[1], tgid),
        };
        pending_opens.update(&tid, &open);
    } else if (nr == NR_EXECVE || nr == NR_EXECVEAT) {
        __sync_fetch_and_add(&birth->execs, 1);
        struct exec_entry entry = {.ts = bpf_ktime_get_ns(), .nr = nr, .phase = phase};
        exec_entries.update(&tid, &entry);
    } else if (nr == NR_CLONE) {
        u64 flags = arg[0];
        if (flags & CLONE_NEW_MASK)
            namespace_op(birth, serial, OP_CLONE, flags);
    } else if (nr == NR_CLONE3) {
        u64 flags = 0;  // struct clone_args starts with the u64 flags
        bpf_probe_read_user(&flags, sizeof(flags), (void *)arg[0]);
        if (flags & (CLONE_NEW_MASK | CLONE_NEWTIME))
            namespace_op(birth, serial, OP_CLONE3, flags);
    } else if (nr == NR_UNSHARE) {
        u64 flags = arg[0];
        if (flags & (CLONE_NEW_MASK | CLONE_NEWTIME))
            namespace_op(birth, serial, OP_UNSHARE, flags);
    } else if (nr == NR_SETNS) {
        // Every setns joins a namespace; nstype 0 means "whatever the descriptor is".
        namespace_op(birth, serial, OP_SETNS, (u32)arg[1]);
    } else if (is_mount_family(nr)) {
        u64 now = bpf_ktime_get_ns();
        __sync_fetch_and_add(&birth->mounts, 1);
        reach(birth, PHASE_MOUNTS, now);
        if (nr == NR_PIVOT_ROOT) {
            task->in_rootfs = 1;
            reach(birth, PHASE_ROOTFS, now);
        }
    } else if (nr == NR_CHROOT) {
        // A root switch without pivot_root (runc --no-pivot): not a mount.
        task->in_rootfs = 1;
        reach(birth, PHASE_ROOTFS, bpf_ktime_get_ns());
    }
}

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    u32 *serial = tracking.lookup(&tid);
    if (!serial || !*serial)
        return 0;  // the host's syscalls stop here
    u64 arg[2] = {args->args[0], args->args[1]};
    tracked_syscall(args->id, arg, pid_tgid);
    return 0;
}

// A descriptor number now names the file just opened: remember whether it is a cgroup file.
static __always_inline void open_returned(long ret)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    u32 *serial = tracking.lookup(&tid);
    if (!serial || !*serial)
        return;
    struct cgroup_file *open = pending_opens.lookup(&tid);
    if (!open)
        return;
    struct cgroup_file seen = *open;
    pending_opens.delete(&tid);
    if (ret < 0)
        return;
    struct fd_key fd = {.tgid = pid_tgid >> 32, .fd = (u32)ret};
    if (seen.kind != NOT_CGROUP)
        cgroup_fds.update(&fd, &seen);
    else
        cgroup_fds.delete(&fd);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
    open_returned(args->ret);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat2)
{
    open_returned(args->ret);
    return 0;
}

#if NR_OPEN >= 0
TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
    open_returned(args->ret);
    return 0;
}
#endif

static __always_inline void start_birth(u32 pid, u64 now, struct exec_entry *entry)
{
    int zero = 0;
    u32 *counter = serial_counter.lookup(&zero);  // per CPU: no two CPUs share a serial
    if (!counter)
        return;
    *counter += 1;
    if ((*counter & 0xfffff) == 0)
        *counter += 1;  // serial 0 means "not tracked"
    u32 serial = (bpf_get_smp_processor_id() << 20) | (*counter & 0xfffff);

    struct birth birth = {};
    birth.start_ns = now;
    birth.milestone_ns[PHASE_RUNTIME_START] = now;
    birth.phase = PHASE_RUNTIME_START;
    birth.phase_syscalls[PHASE_RUNTIME_START] = 1;  // the exec that started the runtime
    birth.execs = 1;
    birth.root_pid = pid;
    if (births.update(&serial, &birth))
        return;
    struct task_info task = {.serial = serial, .in_rootfs = 0};
    if (track(pid, &task)) {
        births.delete(&serial);
        return;
    }
    struct count_key key = {.serial = serial, .nr = entry->nr};
    u64 one = 1;
    syscall_counts.update(&key, &one);

    struct event *event = new_event(EVENT_START, serial, pid, now);
    if (!event)
        return;
    bpf_get_current_comm(event->text, COMM_LEN);
    events.ringbuf_submit(event, 0);
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u64 now = bpf_ktime_get_ns();
    u32 pid = args->pid;
    u32 old_pid = args->old_pid;  // differs when a thread other than the leader execs
    // An untracked task's exec was not seen entering: execve(2), entered just now.
    struct exec_entry entry = {.ts = now, .nr = NR_EXECVE, .phase = 0};
    struct exec_entry *seen = exec_entries.lookup(&old_pid);
    if (seen) {
        entry = *seen;
        exec_entries.delete(&old_pid);
    }

    struct task_info *task = tracked.lookup(&old_pid);
    if (task) {
        struct task_info info = *task;
        struct birth *birth = births.lookup(&info.serial);
        if (birth && !birth->done) {
            if (old_pid != pid) {
                untrack(old_pid);
                track(pid, &info);
            }
            if (!info.in_rootfs)
                return 0;  // the runtime re-executing itself, a hook, ...
            birth->done = 1;
            birth->end_ns = now;
            struct event *event = new_event(EVENT_ENTRYPOINT, info.serial, pid, now);
            if (!event)
                return 0;
            event->arg = entry.ts;
            event->aux = entry.phase;
            event->arg2 = bpf_get_current_cgroup_id();
            events.ringbuf_submit(event, 0);
            return 0;
        }
        untrack(old_pid);  // left over from a finished birth
    }

    struct comm_key comm = {};
    bpf_get_current_comm(comm.name, COMM_LEN);
    if (runtimes.lookup(&comm))
        start_birth(pid, now, &entry);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 parent = args->parent_pid;  // the forking thread
    struct task_info *task = tracked.lookup(&parent);
    if (!task)
        return 0;
    struct task_info child = *task;
    struct birth *birth = births.lookup(&child.serial);
    if (!birth || birth->done)
        return 0;
    track(args->child_pid, &child);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = args->pid;
    u32 *serial = tracking.lookup(&tid);
    if (serial && *serial)
        untrack(tid);
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_attach_task)
{
    u32 pid = args->pid;  // the task moved, not the writer
    struct task_info *task = tracked.lookup(&pid);
    if (!task)
        return 0;
    u32 serial = task->serial;
    struct birth *birth = births.lookup(&serial);
    if (!birth || birth->done)
        return 0;
    struct event *event = new_event(EVENT_ATTACH, serial, pid, bpf_ktime_get_ns());
    if (!event)
        return 0;
    event->aux = args->dst_root;
    event->arg = args->dst_id;
    TP_DATA_LOC_READ_STR(event->text, dst_path, PATH_LEN);
    events.ringbuf_submit(event, 0);
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    // Every new cgroup on the host (rare): user space keeps the pods' own.
    struct event *event = new_event(EVENT_MKDIR, 0, bpf_get_current_pid_tgid() >> 32,
                                    bpf_ktime_get_ns());
    if (!event)
        return 0;
    event->aux = args->root;
    event->arg = args->id;
    TP_DATA_LOC_READ_STR(event->text, path, PATH_LEN);
    events.ringbuf_submit(event, 0);
    return 0;
}
