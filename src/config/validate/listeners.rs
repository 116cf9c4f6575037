//! Gateways, and the listeners each VirtualService binds to.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn gateways(
        &mut self,
        set: &'a ResourceSet,
        mesh_addr: SocketAddr,
    ) -> HashMap<String, Vec<(SocketAddr, Vec<String>)>> {
        let mut out: HashMap<String, Vec<(SocketAddr, Vec<String>)>> = HashMap::new();
        let mut owners: HashMap<SocketAddr, String> = HashMap::new();
        for r in &set.resources {
            let Spec::Gateway(gw) = &r.spec else {
                continue;
            };
            self.gateway(r, gw, mesh_addr, &mut owners, &mut out);
        }
        out
    }

    pub(super) fn gateway(
        &mut self,
        r: &'a Resource,
        gw: &Gateway,
        mesh_addr: SocketAddr,
        owners: &mut HashMap<SocketAddr, String>,
        out: &mut HashMap<String, Vec<(SocketAddr, Vec<String>)>>,
    ) {
        let servers = out.entry(r.name().to_owned()).or_default();
        for s in &gw.servers {
            let number = &s.port.number;
            let Ok(port) = u16::try_from(number.value)
                .map_err(drop)
                .and_then(|p| if p == 0 { Err(()) } else { Ok(p) })
            else {
                self.err(
                    r,
                    number.pos,
                    format!("port {} is out of range 1-65535", number.value),
                );
                continue;
            };
            let ip = match &s.bind {
                None => IpAddr::from([0, 0, 0, 0]),
                Some(b) => match b.value.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => {
                        self.err(r, b.pos, format!("bind `{}` is not an IP address", b.value));
                        continue;
                    }
                },
            };
            let protocol = s
                .port
                .protocol
                .as_deref()
                .unwrap_or("HTTP")
                .to_ascii_uppercase();
            if !matches!(protocol.as_str(), "HTTP" | "HTTPS" | "HTTP2" | "GRPC") {
                self.err(
                    r,
                    s.port.pos,
                    format!(
                        "server protocol {protocol} is not supported yet (HTTP, HTTPS, HTTP2, GRPC)"
                    ),
                );
                continue;
            }
            let Some(side) = self.server_side(r, s, &protocol) else {
                continue;
            };
            if s.hosts.is_empty() {
                self.err(r, s.pos, "a gateway server needs at least one host");
            }
            let addr = SocketAddr::new(ip, port);
            if addr == mesh_addr
                || (addr.port() == mesh_addr.port()
                    && (addr.ip().is_unspecified() || mesh_addr.ip().is_unspecified()))
            {
                self.err(
                    r,
                    number.pos,
                    format!("{addr} is the mesh listener's address"),
                );
                continue;
            }
            if let Some(owner) = owners.get(&addr)
                && owner != r.name()
            {
                self.err(
                    r,
                    number.pos,
                    format!("{addr} is already used by Gateway `{owner}`"),
                );
                continue;
            }
            owners.insert(addr, r.name().to_owned());
            servers.push((addr, s.hosts.clone()));
            self.sides
                .entry(addr)
                .or_insert((r, Vec::new()))
                .1
                .push(side);
        }
    }

    /// The listeners a VirtualService is served on, with the hosts each admits.
    pub(super) fn vs_listeners(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        hosts: &[String],
        gateways: &HashMap<String, Vec<(SocketAddr, Vec<String>)>>,
        listener_ids: &HashMap<SocketAddr, usize>,
    ) -> Vec<(usize, Vec<String>)> {
        let mut out = Vec::new();
        // Kong's routes run on the main listener, wildcard hosts included, as on Kong's proxy.
        let kong = r
            .metadata
            .annotations
            .get(GENERATED_BY)
            .is_some_and(|g| g.starts_with(KONG_PREFIX));
        if vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH) {
            for h in hosts {
                if h.contains('*') && !kong {
                    self.err(r, vs.pos, format!("wildcard host `{h}` needs a gateway"));
                }
            }
            out.push((0, hosts.to_vec()));
        }
        for g in vs.gateways.iter().filter(|g| *g != MESH) {
            let Some(servers) = gateways.get(short_ref(g)) else {
                self.err(r, vs.pos, format!("gateway `{g}` is not defined"));
                continue;
            };
            for (addr, server_hosts) in servers {
                let admitted: Vec<String> = hosts
                    .iter()
                    .filter(|h| server_hosts.iter().any(|s| host_allowed(s, h)))
                    .cloned()
                    .collect();
                if let Some(&id) = listener_ids.get(addr)
                    && !admitted.is_empty()
                {
                    out.push((id, admitted));
                }
            }
        }
        out
    }
}
