//! The kernel's count of connections a full listen queue turned away
//! (`TcpExt: ListenOverflows ListenDrops` in /proc/net/netstat, Linux). The
//! counters are per network namespace, not per socket: anything else on the
//! machine that overflows a listen queue during the run is counted too.

use serde::Serialize;

#[derive(Clone, Copy, Default, Serialize)]
pub struct ListenCounters {
    /// SYNs dropped because the accept queue was full.
    pub overflows: i64,
    /// Every SYN or handshake-completing ACK a listener dropped, overflows included.
    pub drops: i64,
}

impl ListenCounters {
    /// None where /proc/net/netstat is not there (not Linux).
    pub fn read() -> Option<ListenCounters> {
        parse(&std::fs::read_to_string("/proc/net/netstat").ok()?)
    }

    pub fn minus(self, before: ListenCounters) -> ListenCounters {
        ListenCounters { overflows: self.overflows - before.overflows, drops: self.drops - before.drops }
    }
}

/// The file pairs a line of names with a line of values, per protocol.
fn parse(text: &str) -> Option<ListenCounters> {
    let mut tcp_ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = tcp_ext.next()?.split_whitespace();
    let values = tcp_ext.next()?.split_whitespace();
    let mut counters = (None, None);
    for (name, value) in names.zip(values) {
        match name {
            "ListenOverflows" => counters.0 = value.parse().ok(),
            "ListenDrops" => counters.1 = value.parse().ok(),
            _ => {}
        }
    }
    Some(ListenCounters { overflows: counters.0?, drops: counters.1? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tcp_ext_pair_of_lines() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPHPHits\n\
                    TcpExt: 0 38 41 7\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        let c = parse(text).unwrap();
        assert_eq!((c.overflows, c.drops), (38, 41));
        assert!(parse("IpExt: InNoRoutes\nIpExt: 0\n").is_none());
    }
}
