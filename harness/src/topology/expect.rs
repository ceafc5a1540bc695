//! STUB
use std::net::Ipv4Addr;
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceVia { ClusterIp, ExternalIp, Lb }
#[derive(Debug, Clone, PartialEq)]
pub enum Target { Pod { ns: String, name: String, port: Option<u16> }, Service { ns: String, name: String, port: Option<u16>, via: ServiceVia }, NodePort { node: String, ns: String, name: String }, Ip { addr: Ipv4Addr, port: Option<u16> } }
#[derive(Debug, Clone, PartialEq)]
pub enum Origin { Pod { ns: String, name: String }, Node(String), External(String) }
#[derive(Debug, Clone, PartialEq)]
pub enum SourceExpect { Client, Node(String), Ip(Ipv4Addr) }
pub fn parse_target(_s: &str) -> Result<Target, String> { todo!() }
pub fn parse_origin(_s: &str) -> Result<Origin, String> { todo!() }
pub fn parse_source(_s: &str) -> Result<SourceExpect, String> { todo!() }
