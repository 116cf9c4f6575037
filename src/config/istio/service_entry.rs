//! `ServiceEntry`: a service's hosts, ports and endpoints.

use crate::config::decode::{Opaque, Spanned};
use crate::{decode_enum, decode_struct};
use std::collections::BTreeMap;

decode_struct! {
    /// `ServiceEntry.spec`: declares a service and its endpoints.
    pub struct ServiceEntry ("ServiceEntry spec") {
        /// Service hosts.
        hosts: Vec<Spanned<String>> = "hosts",
        /// Virtual IPs (parsed only).
        addresses: Vec<String> = "addresses",
        /// Service ports.
        ports: Vec<ServicePort> = "ports",
        /// Inside or outside the mesh (parsed only).
        location: Option<Location> = "location",
        /// How endpoints are found.
        resolution: Option<Resolution> = "resolution",
        /// Endpoints.
        endpoints: Vec<WorkloadEntry> = "endpoints",
        /// Workload selector (not supported).
        workload_selector: Option<Opaque> = "workloadSelector",
        /// Visibility (no meaning without Kubernetes).
        export_to: Vec<String> = "exportTo",
        /// Accepted SANs (parsed only).
        subject_alt_names: Vec<String> = "subjectAltNames",
    }
}

decode_struct! {
    /// `ServicePort`.
    pub struct ServicePort ("ServicePort") {
        /// Port number.
        number: u32 = "number",
        /// Protocol: HTTP, HTTP2, GRPC, ...
        protocol: Option<String> = "protocol",
        /// Port name, referenced by endpoint `ports`.
        name: Option<String> = "name",
        /// Endpoint port when endpoints do not name one.
        target_port: Option<u32> = "targetPort",
    }
}

decode_enum! {
    /// `ServiceEntry.Location`.
    pub enum Location ("location") {
        /// Outside the mesh.
        #[default]
        MeshExternal = "MESH_EXTERNAL",
        /// Inside the mesh.
        MeshInternal = "MESH_INTERNAL",
    }
}

decode_enum! {
    /// `ServiceEntry.Resolution`.
    pub enum Resolution ("resolution") {
        /// Use the original destination (not supported for routing).
        #[default]
        None = "NONE",
        /// Endpoints are IP addresses.
        Static = "STATIC",
        /// Endpoints (or hosts) are resolved with DNS.
        Dns = "DNS",
        /// DNS, round robin over the first answer.
        DnsRoundRobin = "DNS_ROUND_ROBIN",
    }
}

decode_struct! {
    /// `WorkloadEntry`: one endpoint.
    pub struct WorkloadEntry ("WorkloadEntry") {
        /// IP address or DNS name.
        address: Spanned<String> = "address",
        /// Port name to number.
        ports: BTreeMap<String, u32> = "ports",
        /// Labels, matched by subsets.
        labels: BTreeMap<String, String> = "labels",
        /// Network (parsed only).
        network: Option<String> = "network",
        /// Locality (parsed only).
        locality: Option<String> = "locality",
        /// Load-balancing weight.
        weight: Option<u32> = "weight",
        /// Service account (parsed only).
        service_account: Option<String> = "serviceAccount",
    }
}
