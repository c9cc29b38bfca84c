//! gwctl's integration tests: one binary, one module per feature (as in casey/just).

mod support;

mod architecture;
mod aws;
mod certificates;
mod ci_example;
mod devices;
mod disaster;
mod dns;
mod export;
mod faults;
mod federation;
mod init;
mod json_output;
mod kill;
mod loadtest;
mod lock;

mod rabbitmq;
mod render;
mod router;
mod sandbox;
mod schema;
mod shell;
mod upgrade;
mod validate;
mod vpn;
