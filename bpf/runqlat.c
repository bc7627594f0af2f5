// Run-queue latency per container: how long runnable tasks wait for a CPU.
//
// Tracepoints only (sched_wakeup, sched_wakeup_new, sched_switch). A task becomes
// runnable when it is woken or when it is switched out while still runnable (preempted,
// or its cgroup throttled: a throttled task waits here until the next CFS period). The
// wait ends when sched_switch switches it in.
//
// Tasks are attributed to a "target" (a container the user asked about) by a key known in
// the context of the task itself: its cgroup v2 id (KEY_BY_TGID undefined; v2 and hybrid
// hosts where containers have a cgroup2 directory) or its process id (KEY_BY_TGID; pure
// v1 hosts, user space keeps the map of a container's pids). At sched_switch only the
// outgoing task is "current", so the target of each task is remembered in task_target
// when it runs, and used when it is switched back in. Untracked tasks cost one lookup.
//
// Per-event work is map updates only: no strings, no output. User space reads the maps.

#define TASK_REPORT_MASK 0xff  // prev_state bits below TASK_REPORT_MAX; 0 means runnable
#define MAX_SLOTS 32           // log2 buckets of microseconds

struct hist_key {
    u32 target;
    u32 slot;
};

BPF_HASH(targets, u64, u32, MAX_KEYS);                  // cgroup id or tgid -> target
BPF_TABLE("lru_hash", u32, u32, task_target, 65536);     // tid -> target
BPF_HASH(runnable_since, u32, u64, 65536);               // tid -> ns it became runnable
BPF_HISTOGRAM(latency_us, struct hist_key, MAX_TARGETS * MAX_SLOTS);
BPF_ARRAY(wait_ns, u64, MAX_TARGETS);                    // sum of the waits
BPF_ARRAY(involuntary, u64, MAX_TARGETS);                // switched out while runnable

static __always_inline u32 *current_target(void)
{
#ifdef KEY_BY_TGID
    u64 key = bpf_get_current_pid_tgid() >> 32;
#else
    u64 key = bpf_get_current_cgroup_id();
#endif
    return targets.lookup(&key);
}

static __always_inline void mark_runnable(u32 tid, u64 now)
{
    runnable_since.update(&tid, &now);
}

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    u32 tid = args->pid;
    if (tid == 0 || !task_target.lookup(&tid))
        return 0;
    mark_runnable(tid, bpf_ktime_get_ns());
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    // The parent is current: a new task starts in its parent's cgroup.
    u32 tid = args->pid;
    u32 *target = current_target();
    if (!target)
        return 0;
    u32 value = *target;
    task_target.update(&tid, &value);
    mark_runnable(tid, bpf_ktime_get_ns());
    return 0;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    u64 now = bpf_ktime_get_ns();
    u32 prev = args->prev_pid;
    u32 next = args->next_pid;

    if (prev != 0) {
        u32 *target = current_target();
        if (target) {
            u32 value = *target;
            task_target.update(&prev, &value);
            if ((args->prev_state & TASK_REPORT_MASK) == 0) {
                mark_runnable(prev, now);
                involuntary.atomic_increment(value);
            }
        } else {
            task_target.delete(&prev);  // it left the targets (or never was one)
        }
    }

    if (next == 0)
        return 0;
    u64 *since = runnable_since.lookup(&next);
    if (!since)
        return 0;
    u64 waited = now - *since;
    runnable_since.delete(&next);
    u32 *target = task_target.lookup(&next);
    if (!target)
        return 0;
    struct hist_key key = {.target = *target, .slot = bpf_log2l(waited / 1000)};
    if (key.slot >= MAX_SLOTS)
        key.slot = MAX_SLOTS - 1;
    latency_us.atomic_increment(key);
    wait_ns.atomic_increment(*target, waited);
    return 0;
}
