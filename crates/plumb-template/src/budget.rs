//! Render budgets: operations, bytes of values and output, value depth and a
//! wall-clock deadline, so a hostile template fails with a clear error instead
//! of exhausting the CPU, the memory or the stack of the process.
//!
//! The budget is per thread: [`Limits::install`] arms it for the render that
//! runs on the current thread (the executor is single-threaded) and the guard
//! it returns disarms it. Functions charge it where they would allocate in
//! proportion to an argument (`until 10000000`, `repeat`, `indent`) *before*
//! allocating; the executor charges one operation per node, function call and
//! `range` iteration, and the bytes of every function result and output.
//! Without an armed budget nothing is counted (plain library use).
//!
//! Recursive walkers over values (printing, `toJson`, `toYaml`, copies,
//! comparisons) stop at [`Limits::max_depth`]: values can be nested without
//! bound (`$d = dict "a" $d` in a loop) or even be cyclic (`set $m "self" $m`),
//! and Go's own encoders crash on those. A walker that stops records the
//! failure with [`depth_exceeded`]; the executor turns it into an error after
//! the call ([`take_failure`]).

use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits of one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Executor operations (nodes, function calls, `range` iterations;
    /// expensive functions such as `genPrivateKey` count more).
    pub max_ops: u64,
    /// Approximate bytes of values made by functions plus output written,
    /// counted as they are made (not freed): an upper bound on live memory.
    pub max_bytes: u64,
    /// Deepest nesting of values that printing, encoding, copying and
    /// comparing will walk.
    pub max_depth: usize,
    /// Wall-clock time of one render.
    pub timeout: Duration,
}

impl Default for Limits {
    /// Generous for real charts (the largest of the conformance corpus uses
    /// under 1% of each), small enough that a hostile one fails in seconds
    /// within a 2 GiB address space.
    fn default() -> Self {
        Limits {
            max_ops: 200_000_000,
            max_bytes: 512 << 20,
            max_depth: 1000,
            timeout: Duration::from_secs(30),
        }
    }
}

static PROCESS_DEFAULT: Mutex<Option<Limits>> = Mutex::new(None);

impl Limits {
    /// The limits renders use unless told otherwise: [`Limits::default`]
    /// or what [`Limits::set_process_default`] set.
    pub fn process_default() -> Limits {
        PROCESS_DEFAULT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or_default()
    }

    /// Changes the limits of every later render in this process that does not
    /// pass its own (the CLI and the controller configure them once at start).
    pub fn set_process_default(l: Limits) {
        *PROCESS_DEFAULT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(l);
    }

    /// Arms these limits on the current thread until the guard is dropped.
    /// Nested installs (a render inside a render) keep the outer budget.
    pub fn install(self) -> Guard {
        STATE.with(|s| {
            if s.armed.get() {
                return Guard { owner: false };
            }
            s.armed.set(true);
            s.ops_left.set(self.max_ops);
            s.bytes_left.set(self.max_bytes);
            s.next_check.set(CHECK_EVERY);
            s.deadline.set(Instant::now().checked_add(self.timeout));
            s.max_depth.set(self.max_depth);
            s.limits.set(self);
            *s.failure.borrow_mut() = None;
            Guard { owner: true }
        })
    }
}

/// Disarms the budget it armed when dropped.
#[derive(Debug)]
pub struct Guard {
    owner: bool,
}

impl Guard {
    /// Operations and bytes used so far by the armed budget.
    pub fn used(&self) -> (u64, u64) {
        STATE.with(|s| {
            let l = s.limits.get();
            (
                l.max_ops.saturating_sub(s.ops_left.get()),
                l.max_bytes.saturating_sub(s.bytes_left.get()),
            )
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.owner {
            let _ = STATE.try_with(|s| {
                s.armed.set(false);
                s.max_depth.set(UNARMED_DEPTH);
                *s.failure.borrow_mut() = None;
            });
        }
    }
}

/// Operations between two looks at the clock.
const CHECK_EVERY: u64 = 1024;
/// Depth bound of walkers when no budget is armed: what the stack takes.
const UNARMED_DEPTH: usize = 1000;

struct State {
    armed: Cell<bool>,
    ops_left: Cell<u64>,
    bytes_left: Cell<u64>,
    next_check: Cell<u64>,
    deadline: Cell<Option<Instant>>,
    max_depth: Cell<usize>,
    limits: Cell<Limits>,
    failure: RefCell<Option<String>>,
}

thread_local! {
    static STATE: State = const { State {
        armed: Cell::new(false),
        ops_left: Cell::new(0),
        bytes_left: Cell::new(0),
        next_check: Cell::new(CHECK_EVERY),
        deadline: Cell::new(None),
        max_depth: Cell::new(UNARMED_DEPTH),
        limits: Cell::new(Limits {
            max_ops: 0,
            max_bytes: 0,
            max_depth: UNARMED_DEPTH,
            timeout: Duration::ZERO,
        }),
        failure: RefCell::new(None),
    } };
}

/// Charges `n` operations; checks the deadline every [`CHECK_EVERY`].
pub fn charge_ops(n: u64) -> Result<(), String> {
    STATE.with(|s| {
        if !s.armed.get() {
            return Ok(());
        }
        let left = s.ops_left.get();
        if n > left {
            s.ops_left.set(0);
            return Err(format!(
                "render budget exceeded: more than {} operations",
                s.limits.get().max_ops
            ));
        }
        s.ops_left.set(left - n);
        let next = s.next_check.get();
        if n >= next {
            s.next_check.set(CHECK_EVERY);
            if s.deadline.get().is_some_and(|d| Instant::now() > d) {
                return Err(format!(
                    "render budget exceeded: took longer than {}s",
                    s.limits.get().timeout.as_secs_f64()
                ));
            }
        } else {
            s.next_check.set(next - n);
        }
        Ok(())
    })
}

/// Charges `n` bytes of values or output about to be made.
pub fn charge_bytes(n: u64) -> Result<(), String> {
    STATE.with(|s| {
        if !s.armed.get() {
            return Ok(());
        }
        let left = s.bytes_left.get();
        if n > left {
            s.bytes_left.set(0);
            return Err(format!(
                "render budget exceeded: more than {} bytes of values and output",
                s.limits.get().max_bytes
            ));
        }
        s.bytes_left.set(left - n);
        Ok(())
    })
}

/// Charges `count` items of `size` bytes each (saturating).
pub fn charge_items(count: u64, size: u64) -> Result<(), String> {
    charge_bytes(count.saturating_mul(size))
}

/// The deepest value nesting walkers may descend to.
pub fn max_depth() -> usize {
    STATE
        .try_with(|s| s.max_depth.get())
        .unwrap_or(UNARMED_DEPTH)
}

/// Records that a walker stopped at the depth limit (see [`take_failure`]).
pub fn depth_exceeded() {
    record(format!(
        "render budget exceeded: values nested deeper than {} (or cyclic)",
        max_depth()
    ));
}

/// Longest text one walker builds (a printed or encoded value), armed or not:
/// the output of a whole render is capped at the same size.
pub const MAX_TEXT: usize = 64 << 20;

/// Whether a walker that has built `len` bytes of text may go on; records the
/// failure when that is more than the bytes left (or [`MAX_TEXT`]).
pub fn room(len: usize) -> bool {
    let over = len > MAX_TEXT
        || STATE
            .try_with(|s| s.armed.get() && len as u64 > s.bytes_left.get())
            .unwrap_or(false);
    if over {
        record(format!(
            "render budget exceeded: more than {} bytes of values and output",
            STATE
                .try_with(|s| s.limits.get().max_bytes)
                .unwrap_or_default()
        ));
    }
    !over
}

/// Records the first failure of a walker that cannot return an error.
pub fn record(msg: String) {
    let _ = STATE.try_with(|s| {
        let mut f = s.failure.borrow_mut();
        if f.is_none() {
            *f = Some(msg);
        }
    });
}

/// Runs `f` for one level below `depth` of a value walk, or records the
/// failure and returns `None` when that is deeper than the limit. Grows the
/// stack on the heap now and then, as walkers run on small thread stacks.
/// Each level visited counts one operation, so walks of shared sub-values
/// (a list holding itself twice, 60 times over) end too.
pub fn deeper<T>(depth: usize, f: impl FnOnce() -> T) -> Option<T> {
    if depth >= max_depth() {
        depth_exceeded();
        return None;
    }
    if let Err(e) = charge_ops(1) {
        record(e);
        return None;
    }
    if depth % 64 == 63 {
        Some(stacker::maybe_grow(64 * 1024, 1 << 20, f))
    } else {
        Some(f())
    }
}

/// The failure a walker recorded since the last call, if any.
pub fn take_failure() -> Option<String> {
    STATE
        .try_with(|s| s.failure.borrow_mut().take())
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_bytes_and_deadline_trip() {
        let g = Limits {
            max_ops: 10,
            max_bytes: 100,
            max_depth: 5,
            timeout: Duration::from_secs(60),
        }
        .install();
        assert!(charge_ops(10).is_ok());
        assert!(charge_ops(1).unwrap_err().contains("10 operations"));
        assert!(charge_bytes(100).is_ok());
        assert!(charge_bytes(1).unwrap_err().contains("100 bytes"));
        assert_eq!(max_depth(), 5);
        drop(g);
        assert!(charge_ops(u64::MAX).is_ok(), "disarmed");

        let _g = Limits {
            timeout: Duration::ZERO,
            ..Limits::default()
        }
        .install();
        std::thread::sleep(Duration::from_millis(2));
        assert!(charge_ops(CHECK_EVERY).unwrap_err().contains("longer than"));
    }

    #[test]
    fn nested_install_keeps_outer_budget() {
        let _outer = Limits {
            max_ops: 5,
            ..Limits::default()
        }
        .install();
        {
            let _inner = Limits::default().install();
            assert!(charge_ops(5).is_ok());
        }
        assert!(charge_ops(1).is_err());
    }
}
