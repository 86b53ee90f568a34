//! Integration tests of berth-tls (one test binary; modules below).

mod pebble;
