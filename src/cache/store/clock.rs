//! The one piece of Lua that two scripts share: the Redis clock turned into
//! a counter value. A missing counter comes back from it, above any value it
//! held before it went missing (rule 3), whether a read finds it missing
//! (`LOOKUP`, `reads.rs`) or a bump does (`BUMP`, `bumps.rs`). Written once
//! here, so the two can never disagree on what "fresh" means.

/// Lua that sets `now` to the Redis clock in microseconds, and `fresh` to it
/// as a counter value: above any value a counter held before it went missing
/// (rule 3). Written once, composed into both scripts. (A Lua number holds
/// integers up to 2^53 exactly; microseconds since 1970 are about 2^51.)
macro_rules! fresh_counter_from_time {
    () => {
        "local t = redis.call('TIME')\n\
         local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n\
         local fresh = string.format('%.0f', now)\n"
    };
}

pub(super) use fresh_counter_from_time;

#[cfg(test)]
mod tests {
    use super::super::bumps::BUMP;
    use super::super::reads::LOOKUP;

    #[test]
    fn the_clock_snippet_is_in_both_scripts_once() {
        for script in [LOOKUP, BUMP] {
            assert_eq!(script.matches("redis.call('TIME')").count(), 1, "{script}");
        }
    }
}
