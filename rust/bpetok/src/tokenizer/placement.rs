//! Where the threads of a batch run: each on a CPU of its own when the process has enough.
//!
//! A batch's threads are started for the batch and end with it. Linux places a new thread by the
//! CPUs' recent load, and right after a batch the CPU its threads ran on still looks busy, so the
//! next batch's thread was often started on the CPU of the thread that started it, beside it,
//! while the other CPU stayed idle; two busy threads of one process are then not moved apart
//! for a while (each is "cache hot"). In `bench_peers.py`'s warm 2-thread pass over Chinese,
//! which follows another batch at once, 4 processes of 12 ran the whole pass on one CPU (CPU
//! time equal to wall time, twice the wall time of the others). So a thread started for a batch
//! looks, first thing, whether it is on the CPU of the thread that started it and, if it is and
//! the process may run on more CPUs than the batch has threads, leaves it: its affinity is
//! narrowed to the other CPUs for a moment (which moves it to one of them) and then given back
//! whole, so the scheduler remains free to move it later. Nothing else changes: the work each
//! thread does, and so every result, is the same wherever it runs.

/// The CPU of the thread that starts a batch's threads (see the module's text).
#[derive(Clone, Copy, Debug)]
pub struct CallerCpu(Option<usize>);

impl CallerCpu {
    /// The CPU this thread runs on now, where the platform tells it.
    pub fn here() -> Self {
        Self(current_cpu())
    }

    /// Starts one of the threads of a batch of `threads` threads (the calling one included) in
    /// `scope`: it runs `work` after leaving this caller's CPU (see [`CallerCpu::leave`]).
    pub fn spawn<'scope, T: Send + 'scope>(
        self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        threads: usize,
        work: impl FnOnce() -> T + Send + 'scope,
    ) -> std::thread::ScopedJoinHandle<'scope, T> {
        scope.spawn(move || {
            self.leave(threads);
            work()
        })
    }

    /// Called first thing on a thread started for a batch of `threads` threads (the starting one
    /// included): moves this thread off the starting thread's CPU if it was placed there and the
    /// process may run on at least `threads` CPUs.
    fn leave(self, threads: usize) {
        if let Some(caller) = self.0 {
            leave_cpu(caller, threads);
        }
    }
}

#[cfg(target_os = "linux")]
fn current_cpu() -> Option<usize> {
    nix::sched::sched_getcpu().ok()
}

#[cfg(not(target_os = "linux"))]
fn current_cpu() -> Option<usize> {
    None
}

#[cfg(target_os = "linux")]
fn leave_cpu(caller: usize, threads: usize) {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    if current_cpu() != Some(caller) {
        return;
    }
    let this_thread = Pid::from_raw(0);
    let Ok(allowed) = sched_getaffinity(this_thread) else {
        return;
    };
    let cpus = (0..CpuSet::count())
        .filter(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .count();
    if cpus < threads.max(2) {
        return;
    }
    let mut others = allowed;
    if others.unset(caller).is_ok() && sched_setaffinity(this_thread, &others).is_ok() {
        // Moved; the whole set again, so that it may be moved back or anywhere later.
        let _ = sched_setaffinity(this_thread, &allowed);
    }
}

#[cfg(not(target_os = "linux"))]
fn leave_cpu(_caller: usize, _threads: usize) {}

#[cfg(test)]
mod tests {
    use super::{current_cpu, CallerCpu};

    /// A thread started beside its caller leaves the caller's CPU when the process has another,
    /// and keeps the whole affinity it had.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_leaves_the_callers_cpu_and_keeps_its_affinity() {
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let me = Pid::from_raw(0);
        let allowed = sched_getaffinity(me).unwrap();
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| allowed.is_set(c).unwrap())
            .collect();
        std::thread::spawn(move || {
            // The caller on the first CPU; its children may run on any.
            let mut first = CpuSet::new();
            first.set(cpus[0]).unwrap();
            sched_setaffinity(me, &first).unwrap();
            let caller = CallerCpu::here();
            sched_setaffinity(me, &allowed).unwrap();
            assert_eq!(caller.0, Some(cpus[0]));
            for _ in 0..500 {
                let (cpu, affinity) = std::thread::spawn(move || {
                    caller.leave(2);
                    (current_cpu(), sched_getaffinity(me).unwrap())
                })
                .join()
                .unwrap();
                assert_eq!(affinity, allowed);
                if cpus.len() >= 2 {
                    assert_ne!(cpu, caller.0);
                }
            }
        })
        .join()
        .unwrap();
    }
}
