//! The order steps may start in: a step is ready when every dependency is done. Pure
//! bookkeeping over plan indices, shared by the serial and the dispatched executors.
//!
//! | event | what follows |
//! |---|---|
//! | a step is done | its dependants whose dependencies are all done become ready |
//! | a step failed | no new step starts (default), or, with `keep_going`, only its descendants are skipped |
//! | nothing ready, nothing running | the run is over |
//!
//! Ready steps come out in plan order (a topological order), so a serial run walks the plan
//! exactly as before parallelism existed.

use std::collections::{BTreeMap, BTreeSet};

pub struct Schedule {
    /// For each selected step, its selected dependencies not yet done.
    waiting_on: BTreeMap<usize, BTreeSet<usize>>,
    /// Selected steps that depend on each step.
    dependants: BTreeMap<usize, Vec<usize>>,
    ready: BTreeSet<usize>,
    running: BTreeSet<usize>,
    done: BTreeSet<usize>,
    failed: BTreeSet<usize>,
    /// Never started: downstream of a failure, or left when the run stopped.
    skipped: BTreeSet<usize>,
    keep_going: bool,
    stopped: bool,
}

impl Schedule {
    /// `deps(i)` lists step `i`'s dependencies; those outside `selected` count as done.
    pub fn new(selected: &[usize], deps: impl Fn(usize) -> Vec<usize>, keep_going: bool) -> Schedule {
        let chosen: BTreeSet<usize> = selected.iter().copied().collect();
        let mut waiting_on = BTreeMap::new();
        let mut dependants: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut ready = BTreeSet::new();
        for &i in selected {
            let on: BTreeSet<usize> = deps(i).into_iter().filter(|d| chosen.contains(d)).collect();
            for &d in &on {
                dependants.entry(d).or_default().push(i);
            }
            if on.is_empty() {
                ready.insert(i);
            }
            waiting_on.insert(i, on);
        }
        Schedule {
            waiting_on,
            dependants,
            ready,
            running: BTreeSet::new(),
            done: BTreeSet::new(),
            failed: BTreeSet::new(),
            skipped: BTreeSet::new(),
            keep_going,
            stopped: false,
        }
    }

    /// The next ready step (lowest plan index), now counted as running.
    pub fn start_next(&mut self) -> Option<usize> {
        if self.stopped {
            return None;
        }
        let i = self.ready.pop_first()?;
        self.running.insert(i);
        Some(i)
    }

    /// Whether any step is ready to start.
    pub fn has_ready(&self) -> bool {
        !self.stopped && !self.ready.is_empty()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Whether the run is over: nothing running and nothing more may start.
    pub fn is_over(&self) -> bool {
        self.running.is_empty() && !self.has_ready()
    }

    pub fn finish(&mut self, i: usize) {
        self.running.remove(&i);
        self.done.insert(i);
        for &d in self.dependants.get(&i).map(Vec::as_slice).unwrap_or_default() {
            let on = self.waiting_on.get_mut(&d).expect("dependants are selected");
            on.remove(&i);
            if on.is_empty() && !self.skipped.contains(&d) {
                self.ready.insert(d);
            }
        }
    }

    /// Step `i` failed: without `keep_going` nothing new starts (running steps finish); with
    /// it, every step downstream of `i` is skipped and the rest goes on.
    pub fn fail(&mut self, i: usize) {
        self.running.remove(&i);
        self.failed.insert(i);
        if !self.keep_going {
            self.stopped = true;
            return;
        }
        let mut stack = vec![i];
        while let Some(s) = stack.pop() {
            for &d in self.dependants.get(&s).map(Vec::as_slice).unwrap_or_default() {
                if self.skipped.insert(d) {
                    self.ready.remove(&d);
                    stack.push(d);
                }
            }
        }
    }

    #[cfg(test)]
    pub fn failed(&self) -> &BTreeSet<usize> {
        &self.failed
    }

    /// Selected steps that never started, in plan order.
    pub fn not_started(&self) -> Vec<usize> {
        self.waiting_on
            .keys()
            .copied()
            .filter(|i| !self.done.contains(i) && !self.failed.contains(i) && !self.running.contains(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 → {1, 2}; 1 → 3; 2 → 4 (two independent chains after a shared root).
    fn diamondish(keep_going: bool) -> Schedule {
        let deps = |i: usize| match i {
            1 | 2 => vec![0],
            3 => vec![1],
            4 => vec![2],
            _ => vec![],
        };
        Schedule::new(&[0, 1, 2, 3, 4], deps, keep_going)
    }

    #[test]
    fn independent_steps_are_ready_together_and_in_plan_order() {
        let mut s = diamondish(false);
        assert_eq!(s.start_next(), Some(0));
        assert_eq!(s.start_next(), None, "1 and 2 wait for 0");
        s.finish(0);
        assert_eq!((s.start_next(), s.start_next(), s.start_next()), (Some(1), Some(2), None));
        assert_eq!(s.running(), 2);
        s.finish(2);
        assert_eq!(s.start_next(), Some(4));
        s.finish(1);
        s.finish(4);
        assert_eq!(s.start_next(), Some(3));
        s.finish(3);
        assert!(s.is_over());
        assert!(s.not_started().is_empty());
    }

    #[test]
    fn a_failure_stops_new_starts_but_not_running_steps() {
        let mut s = diamondish(false);
        s.start_next();
        s.finish(0);
        let (a, b) = (s.start_next().unwrap(), s.start_next().unwrap());
        s.fail(a);
        assert!(!s.is_over(), "{b} still runs");
        assert_eq!(s.start_next(), None);
        s.finish(b);
        assert!(s.is_over());
        assert_eq!(s.not_started(), vec![3, 4]);
        assert_eq!(s.failed().iter().copied().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn keep_going_skips_only_what_is_downstream_of_a_failure() {
        let mut s = diamondish(true);
        s.start_next();
        s.finish(0);
        let (a, b) = (s.start_next().unwrap(), s.start_next().unwrap());
        s.fail(a);
        s.finish(b);
        assert_eq!(s.start_next(), Some(4), "2's chain goes on");
        s.finish(4);
        assert!(s.is_over());
        assert_eq!(s.not_started(), vec![3], "only 1's descendant is skipped");
    }

    #[test]
    fn dependencies_outside_the_selection_count_as_done() {
        let mut s = Schedule::new(&[3], |_| vec![1], false);
        assert_eq!(s.start_next(), Some(3));
    }
}
