mod support;

mod abuse_login;
mod auth;
mod clicks;
mod concurrency;
mod contract;
mod errors;
mod limits;
mod links;
mod list_plans;
mod ops;
mod pages;
mod profiles;
mod search_grams;
mod socials;
mod startup;
mod stop;
mod users;

mod cache_resilience;
mod cache_rules;
mod invalidation;
mod near_cache;
mod observer;
mod outside_changes;
mod redis_restarts;
mod releases;

mod abuse_bulkheads;
mod abuse_cache;
mod abuse_limits;

mod failover;
mod scale_out;
mod tls;
mod topology;

mod metrics_access;
mod telemetry;
