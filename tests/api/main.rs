mod helpers;

mod auth;
mod concurrency;
mod errors;
mod links;
mod ops;
mod pages;
mod profiles;
mod socials;
mod startup;
mod users;

mod cache_resilience;
mod cache_rules;
mod cache_support;
mod proxy;
mod scale_out;
mod tls;
