"""moto_server, extended where moto lacks an EC2 action that real AWS has and gwctl relies on.

moto 5.2.1 answers CreateVpnConnectionRoute, DeleteVpnConnectionRoute, EnableVgwRoutePropagation
and DisableVgwRoutePropagation with HTTP 500 NotImplemented, and forgets the VPN connection's
Options (StaticRoutesOnly). A static-routes VPN carries no traffic on AWS without its route, so
gwctl makes these calls; this launcher adds them with state that DescribeVpnConnections
(Routes, Options) and DescribeRouteTables (PropagatingVgws) report back, then runs moto's own
server. Usage: python moto_server.py -H 127.0.0.1 -p PORT

Route53 change batches follow AWS's rules too (moto checks CREATE and DELETE against a journal
of past changes instead of the records that exist): the whole batch is validated against the
current record sets before anything is applied; a CREATE of an existing name+type(+set
identifier) and a DELETE whose TTL or values differ from the current ones fail with
InvalidChangeBatch. gwctl's lock (a TXT record created with CREATE) relies on exactly that.
Health checks get what AWS does and moto lacks: CallerReference idempotency, and an observation
from every checker region of the check.

Every region also gets AWS's managed prefix list of Route53 health checkers
(com.amazonaws.<region>.route53-healthchecks), which security groups reference, and a rule's
prefix list keeps its description when read back, as on AWS.

VPN connections' customer gateway configuration (the XML for the customer's device) carries
each tunnel's own outside and inside addresses and pre-shared key, as on AWS.

RunInstances is idempotent by ClientToken, and CreateVpnConnection by its gateways, as on AWS;
RemoveRoleFromInstanceProfile for a role not in the profile answers NoSuchEntity.

AWS's asynchronous states, when asked for (EMULATOR_INSTANCE_PENDING_S, EMULATOR_VPN_PENDING_S,
EMULATOR_CHANGE_PENDING_S: seconds, off by default): instances launch `pending` and refuse an
address until `running`, VPN connections stay `pending` before `available`, Route53 changes stay
PENDING before INSYNC (each with its own change id). A health check tagged
`emulator:health=down` is reported failing by every checker.

It also seeds the images an AWS account sees and moto does not list: Debian's (owner
136693071363), so region files can select images by owner and name as in production. They are
added to moto's own built-in images through moto's MOTO_AMIS_PATH setting.
"""
import gzip
import importlib.util
import json
import os
import sys
import tempfile

DEBIAN = "136693071363"
# (id, name, creation date, architecture): bookworm for region files that still pin it, and
# trixie (what gwctl deploys) in two releases per architecture, so "a newer image matches" can
# be tested.
DEBIAN_IMAGES = [
    ("ami-0d0ebb1e000000001", "debian-12-amd64-20250101-1900", "2025-01-01T19:00:00.000Z", "x86_64"),
    ("ami-0d0ebb1e000000002", "debian-12-amd64-20260101-2345", "2026-01-01T23:45:00.000Z", "x86_64"),
    ("ami-0d0ebb1e000000013", "debian-13-amd64-20260810-2205", "2026-08-10T22:05:00.000Z", "x86_64"),
    ("ami-0d0ebb1e000000014", "debian-13-amd64-20261110-0312", "2026-11-10T03:12:00.000Z", "x86_64"),
    ("ami-0d0ebb1e000000023", "debian-13-arm64-20260810-2205", "2026-08-10T22:05:00.000Z", "arm64"),
    ("ami-0d0ebb1e000000024", "debian-13-arm64-20261110-0312", "2026-11-10T03:12:00.000Z", "arm64"),
]


def seed_images():
    spec = importlib.util.find_spec("moto")
    base = os.path.join(spec.submodule_search_locations[0], "ec2", "resources", "amis.json.gz")
    with gzip.open(base, "rt", encoding="utf-8") as f:
        amis = json.load(f)
    for ami_id, name, created, arch in DEBIAN_IMAGES:
        amis.append({
            "ami_id": ami_id, "name": name, "owner_id": DEBIAN, "state": "available", "public": True,
            "creation_date": created, "root_device_type": "ebs", "root_device_name": "/dev/xvda",
            "architecture": arch, "virtualization_type": "hvm", "hypervisor": "xen",
            "image_type": "machine", "sriov": "simple",
            "description": "Debian 12 (bookworm)" if "-12-" in name else "Debian 13 (trixie)",
            "image_location": f"{DEBIAN}/{name}",
        })
    fd, path = tempfile.mkstemp(prefix="gwctl-moto-amis-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(amis, f)
    os.environ["MOTO_AMIS_PATH"] = path


seed_images()  # before moto reads its settings

import moto.server  # noqa: E402
from moto.core.responses import EmptyResult  # noqa: E402
from moto.ec2.exceptions import InvalidParameterValue  # noqa: E402
from moto.ec2.responses import EC2Response  # noqa: E402


def _vpn_connection(self, conn_id):
    # Raises InvalidVpnConnectionID.NotFound like AWS for an unknown id.
    found = self.ec2_backend.describe_vpn_connections(vpn_connection_ids=[conn_id])
    return found[0]


def create_vpn_connection_route(self):
    conn = _vpn_connection(self, self._get_param("VpnConnectionId"))
    cidr = self._get_param("DestinationCidrBlock")
    routes = list(getattr(conn, "routes", None) or [])
    if not any(r["DestinationCidrBlock"] == cidr for r in routes):
        routes.append({"DestinationCidrBlock": cidr, "Source": "static", "State": "available"})
    conn.routes = routes
    return EmptyResult()


def delete_vpn_connection_route(self):
    conn = _vpn_connection(self, self._get_param("VpnConnectionId"))
    cidr = self._get_param("DestinationCidrBlock")
    routes = list(getattr(conn, "routes", None) or [])
    if not any(r["DestinationCidrBlock"] == cidr for r in routes):
        raise InvalidParameterValue(f"The route {cidr} does not exist on {conn.id}")
    conn.routes = [r for r in routes if r["DestinationCidrBlock"] != cidr]
    return EmptyResult()


def _propagation(self, enable):
    table = self.ec2_backend.get_route_table(self._get_param("RouteTableId"))
    gateway = self._get_param("GatewayId")
    self.ec2_backend.get_vpn_gateway(gateway)  # InvalidVpnGatewayID.NotFound for unknown ids
    vgws = [v for v in (getattr(table, "propagating_vgws", None) or []) if v["GatewayId"] != gateway]
    if enable:
        vgws.append({"GatewayId": gateway})
    table.propagating_vgws = vgws
    return EmptyResult()


def enable_vgw_route_propagation(self):
    return _propagation(self, True)


def disable_vgw_route_propagation(self):
    return _propagation(self, False)


_create_vpn_connection = EC2Response.create_vpn_connection


# Tunnels as AWS reports them: options per tunnel (what was asked, AWS's defaults otherwise,
# which still allow IKEv1, SHA-1 and DH group 2), an outside address each, and telemetry. A
# tunnel is DOWN until the customer gateway connects; the emulator has no customer device, so
# the harness reports tunnels UP (as with the backend's device connected), and DOWN for a
# connection a test tagged `emulator:tunnels=down` (the backend's device gone).
AWS_TUNNEL_DEFAULTS = {
    "Phase1EncryptionAlgorithms": ["AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16"],
    "Phase2EncryptionAlgorithms": ["AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16"],
    "Phase1IntegrityAlgorithms": ["SHA1", "SHA2-256", "SHA2-384", "SHA2-512"],
    "Phase2IntegrityAlgorithms": ["SHA1", "SHA2-256", "SHA2-384", "SHA2-512"],
    "Phase1DHGroupNumbers": [2, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
    "Phase2DHGroupNumbers": [2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
    "IkeVersions": ["ikev1", "ikev2"],
}
# The request's name of each (AWS spells IKEVersions in requests, IkeVersions in answers).
REQUEST_NAMES = {"IkeVersions": "IKEVersions"}
_tunnel_counter = [0]


def _values(spec, key):
    got = spec.get(REQUEST_NAMES.get(key, key))
    if not got:
        return None
    if isinstance(got, dict):
        got = [got[k] for k in sorted(got, key=lambda k: int(k) if str(k).isdigit() else 0)]
    return [v.get("Value") if isinstance(v, dict) else v for v in got]


def _tunnel(spec, index):
    _tunnel_counter[0] += 1
    n = _tunnel_counter[0]
    outside = f"198.51.{(n // 250) % 250}.{n % 250 + 1}"
    option = {"OutsideIpAddress": outside}
    option["TunnelInsideCidr"] = spec.get("TunnelInsideCidr") or f"169.254.{(n * 4 // 256) % 256}.{(n * 4) % 256}/30"
    option["PreSharedKey"] = spec.get("PreSharedKey") or f"gwctlmotopsk{n:08d}"
    for key, default in AWS_TUNNEL_DEFAULTS.items():
        values = _values(spec, key) or default
        option[key] = [{"Value": int(v) if "Group" in key else v} for v in values]
    return option


def _telemetry(option, down=False):
    return {
        "OutsideIpAddress": option["OutsideIpAddress"],
        "Status": "DOWN" if down else "UP",
        "StatusMessage": "" if not down else "IPSEC IS DOWN",
        "LastStatusChange": utcnow(),
        "AcceptedRouteCount": 0,
    }


def _tunnel_specs(options):
    specs = options.get("TunnelOptions") or []
    if isinstance(specs, dict):
        specs = [specs[k] for k in sorted(specs, key=lambda k: int(k) if str(k).isdigit() else 0)]
    return (list(specs) + [{}, {}])[:2]


def create_vpn_connection(self):
    # "This is an idempotent operation. If you perform the operation more than once, Amazon
    # EC2 doesn't return an error" (CreateVpnConnection): a repeat for the same customer and
    # virtual private gateway answers with the connection the first one made.
    for conn in self.ec2_backend.vpn_connections.values():
        if (
            conn.customer_gateway_id == self._get_param("CustomerGatewayId")
            and conn.vpn_gateway_id == self._get_param("VpnGatewayId")
            and conn.state not in ("deleting", "deleted")
        ):
            return ActionResult({"VpnConnection": conn})
    result = _create_vpn_connection(self)
    options = self._get_param("Options") or {}
    static = str(options.get("StaticRoutesOnly", "false")).lower() == "true"
    conn = result.result["VpnConnection"]
    tunnels = [_tunnel(spec, i) for i, spec in enumerate(_tunnel_specs(options))]
    conn.options = {"StaticRoutesOnly": static, "TunnelOptions": tunnels}
    conn.vgw_telemetry = [_telemetry(t) for t in tunnels]
    return result


def modify_vpn_tunnel_options(self):
    conn = _vpn_connection(self, self._get_param("VpnConnectionId"))
    outside = self._get_param("VpnTunnelOutsideIpAddress")
    spec = self._get_param("TunnelOptions") or {}
    tunnels = (getattr(conn, "options", None) or {}).get("TunnelOptions") or []
    tunnel = next((t for t in tunnels if t["OutsideIpAddress"] == outside), None)
    if tunnel is None:
        raise InvalidParameterValue(f"The tunnel {outside} does not belong to {conn.id}")
    for key in AWS_TUNNEL_DEFAULTS:
        values = _values(spec, key)
        if values:
            tunnel[key] = [{"Value": int(v) if "Group" in key else v} for v in values]
    for key in ("TunnelInsideCidr", "PreSharedKey"):
        if spec.get(key):
            tunnel[key] = spec[key]
    return ActionResult({"VpnConnection": conn})


# moto parses the creation dates of its image list in place, so the second load (after
# POST /moto-api/reset) finds datetimes where it expects strings and fails; accept both.
import moto.ec2.models.amis as _amis  # noqa: E402

_parse_timestamp = _amis.parse_timestamp
_amis.parse_timestamp = lambda v: _parse_timestamp(v) if isinstance(v, str) else v

# RunInstances drops a block device's Iops and Throughput, so io2 volumes fail with
# InvalidParameterDependency (after the instance was half created) and gp3 volumes report the
# default IOPS. AWS creates the volumes as requested: pass both through.
import contextvars  # noqa: E402

from moto.ec2.models.instances import Instance, InstanceBackend  # noqa: E402

_mappings = contextvars.ContextVar("gwctl_block_device_mappings", default=None)
_run_instances = InstanceBackend.run_instances


# AWS refuses user-data over 16 KiB (before base64); moto accepts any size.
USER_DATA_LIMIT = 16384


def run_instances(self, *args, **kwargs):
    user_data = kwargs.get("user_data", args[2] if len(args) > 2 else None)
    if user_data is not None:
        import base64

        from moto.ec2.exceptions import EC2ClientError

        raw = base64.b64decode(str(user_data)) if not isinstance(user_data, bytes) else base64.b64decode(user_data)
        if len(raw) > USER_DATA_LIMIT:
            raise EC2ClientError("InvalidParameterValue", "User data is limited to 16384 bytes")
    token = _mappings.set(kwargs.get("block_device_mappings"))
    try:
        return _run_instances(self, *args, **kwargs)
    finally:
        _mappings.reset(token)


def add_block_device(self, size, device_path, snapshot_id, encrypted, delete_on_termination, kms_key_id, volume_type):
    ebs = next((m.get("Ebs") or {} for m in (_mappings.get() or []) if m.get("DeviceName") == device_path), {})
    number = lambda v: int(v) if v not in (None, "") else None  # noqa: E731
    volume = self.ec2_backend.create_volume(
        size=size, zone_name=self._placement.zone, snapshot_id=snapshot_id, encrypted=encrypted,
        kms_key_id=kms_key_id, volume_type=volume_type,
        iops=number(ebs.get("Iops")), throughput=number(ebs.get("Throughput")),
    )
    self.ec2_backend.attach_volume(volume.id, self.id, device_path, delete_on_termination)


InstanceBackend.run_instances = run_instances
Instance.add_block_device = add_block_device

import copy  # noqa: E402

from moto.route53.exceptions import DnsNameInvalidForZone, Route53ClientError  # noqa: E402
from moto.route53.models import Route53Backend  # noqa: E402


class _InvalidChangeBatch(Route53ClientError):
    def __init__(self, message):
        super().__init__("InvalidChangeBatch", message)


def _rr_key(name, rtype, set_id):
    return (name.lower().rstrip("."), rtype, set_id)


def _rr_values(ttl, records, alias, health_check_id, region, multivalue):
    """What a DELETE must repeat exactly: TTL and values, or the alias target; the health
    check, the latency region, the multivalue flag."""
    common = (health_check_id or None, region or None, str(multivalue or "false").lower())
    if alias:
        target = (str(alias.get("DNSName", "")).lower().rstrip("."), str(alias.get("EvaluateTargetHealth", "")).lower())
        return ("alias", target) + common
    return (str(ttl), sorted(records or [])) + common


def change_resource_record_sets(self, zoneid, change_list):
    zone = self.get_hosted_zone(zoneid)
    # The batch is checked change by change against the record sets as the earlier changes of
    # the same batch leave them (a DELETE followed by a CREATE of one set is how AWS updates it),
    # and applied only if every change is valid.
    current = {
        _rr_key(rs.name, rs.type, rs.set_identifier): _rr_values(
            rs.ttl, rs.records, rs.alias_target, rs.health_check_id, rs.region, rs.multi_value_answer)
        for rs in zone.rrsets
    }
    seen = set()
    for change in change_list:
        rs = change["ResourceRecordSet"]
        action = change["Action"]
        key = _rr_key(rs["Name"], rs["Type"], rs.get("SetIdentifier"))
        shown = f"[name='{key[0]}.', type='{rs['Type']}'" + (f", set-identifier='{key[2]}'" if key[2] else "") + "]"
        if (key, action) in seen:
            raise _InvalidChangeBatch(f"The request contains an invalid set of changes for a resource record set {shown}")
        seen.add((key, action))
        values = _rr_values(rs.get("TTL"), [r["Value"] for r in rs.get("ResourceRecords", [])], rs.get("AliasTarget"),
                            rs.get("HealthCheckId"), rs.get("Region"), rs.get("MultiValueAnswer"))
        hc = rs.get("HealthCheckId")
        if action in ("CREATE", "UPSERT") and hc and hc not in self.health_checks:
            raise _InvalidChangeBatch(f"Invalid health check id {hc} for {shown}")
        if action == "CREATE":
            if key in current:
                raise _InvalidChangeBatch(f"Tried to create resource record set {shown} but it already exists")
            current[key] = values
        elif action == "UPSERT":
            current[key] = values
        elif action == "DELETE":
            if key not in current:
                raise _InvalidChangeBatch(f"Tried to delete resource record set {shown} but it was not found")
            if values != current[key]:
                raise _InvalidChangeBatch(f"Tried to delete resource record set {shown} but the values provided do not match the current values")
            del current[key]
    # Applied here rather than by moto, whose DELETE with a SetIdentifier removes that identifier
    # under every name, and whose CREATE consults a journal of past change bodies.
    for change in change_list:
        rs = copy.deepcopy(change["ResourceRecordSet"])
        if not rs["Name"].rstrip(".").lower().endswith(zone.name.rstrip(".").lower()):
            raise DnsNameInvalidForZone(name=rs["Name"], zone_name=zone.name)
        if not rs["Name"].endswith("."):
            rs["Name"] += "."
        if "ResourceRecords" in rs:
            rs["ResourceRecords"] = [r["Value"] for r in rs["ResourceRecords"]]
        key = _rr_key(rs["Name"], rs["Type"], rs.get("SetIdentifier"))
        if change["Action"] == "DELETE":
            zone.rrsets = [r for r in zone.rrsets if _rr_key(r.name, r.type, r.set_identifier) != key]
        else:
            zone.rrsets = [r for r in zone.rrsets if _rr_key(r.name, r.type, r.set_identifier) != key]
            zone.add_rrset(rs)
        zone.rr_changes.append(copy.deepcopy(change))


Route53Backend.change_resource_record_sets = change_resource_record_sets

# Health checks. CallerReference is an idempotency token in AWS: the same reference returns the
# check it created (if the configuration is the same; HealthCheckAlreadyExists otherwise).
_create_health_check = Route53Backend.create_health_check


class _HealthCheckAlreadyExists(Route53ClientError):
    code = 409

    def __init__(self, reference):
        super().__init__("HealthCheckAlreadyExists", f"A health check with caller reference {reference} already exists with another configuration")


def create_health_check(self, caller_reference, health_check_args):
    for check in self.health_checks.values():
        if check.caller_reference == caller_reference:
            same = (check.ip_address, str(check.port), check.type_) == (
                health_check_args.get("ip_address"), str(health_check_args.get("port") or 80), health_check_args.get("type"))
            if same:
                return check
            raise _HealthCheckAlreadyExists(caller_reference)
    return _create_health_check(self, caller_reference, health_check_args)


Route53Backend.create_health_check = create_health_check

# Health status. Each observation is what one checker saw of the endpoint (Route53 applies
# Inverted on top of them, not in them). The emulator's endpoints are addresses nobody serves,
# so every endpoint is taken as up, as a healthy gateway's would be, and reported by every
# checker region of the check (moto answers one fixed observation from us-east-1).
from moto.route53.responses import Route53 as _Route53Response  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.core.utils import utcnow  # noqa: E402

CHECKERS = ["us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "sa-east-1"]


def get_health_check_status(self):
    check = self.backend.get_health_check(self._get_param("HealthCheckId"))
    status = "Success: TCP connection established"
    # A test takes an endpoint down by tagging its check `emulator:health=down`: every
    # checker then fails to reach it, as when a region's brokers are gone.
    if self.backend.resource_tags.get(check.id, {}).get("emulator:health") == "down":
        status = "Failure: Connection timed out. The endpoint or the internet connection is down."
    observations = [
        {"Region": region, "IPAddress": "15.177.0.1", "StatusReport": {"Status": status, "CheckedTime": utcnow()}}
        for region in (check.regions or CHECKERS)
    ]
    return ActionResult({"HealthCheckObservations": observations})


_Route53Response.get_health_check_status = get_health_check_status

EC2Response.create_vpn_connection_route = create_vpn_connection_route
EC2Response.delete_vpn_connection_route = delete_vpn_connection_route
EC2Response.enable_vgw_route_propagation = enable_vgw_route_propagation
EC2Response.disable_vgw_route_propagation = disable_vgw_route_propagation
EC2Response.create_vpn_connection = create_vpn_connection
EC2Response.modify_vpn_tunnel_options = modify_vpn_tunnel_options
_describe_vpn_connections = EC2Response.describe_vpn_connections


def describe_vpn_connections(self):
    for conn in self.ec2_backend.vpn_connections.values():
        tunnels = (getattr(conn, "options", None) or {}).get("TunnelOptions") or []
        down = any(t.get("key") == "emulator:tunnels" and t.get("value") == "down" for t in conn.get_tags())
        now = [_telemetry(t, down) for t in tunnels]
        old = getattr(conn, "vgw_telemetry", None) or []
        if [t["Status"] for t in now] != [t.get("Status") for t in old]:
            conn.vgw_telemetry = now
    return _describe_vpn_connections(self)


EC2Response.describe_vpn_connections = describe_vpn_connections

# The customer gateway configuration (the XML AWS generates for the customer's device) names
# each tunnel's outside address, inside addresses and pre-shared key, as the connection's
# tunnel options hold them; moto's is a fixed sample with one key for both tunnels. Terraform's
# aws_vpn_connection reads the tunnels' addresses and keys from it.
import ipaddress  # noqa: E402

import moto.ec2.models.vpn_connections as _vpn_connections  # noqa: E402

_sample_configuration = _vpn_connections.VPNConnection.customer_gateway_configuration.fget


def _customer_gateway_configuration(self):
    text = _sample_configuration(self)
    tunnels = (getattr(self, "options", None) or {}).get("TunnelOptions") or []
    head, *blocks = text.split("<ipsec_tunnel>")
    for i, tunnel in enumerate(tunnels[: len(blocks)]):
        inside = ipaddress.ip_network(tunnel["TunnelInsideCidr"])
        blocks[i] = (
            blocks[i]
            .replace("169.254.44.42", str(inside[2]))
            .replace("169.254.44.41", str(inside[1]))
            .replace("52.2.144.13", tunnel["OutsideIpAddress"])
            .replace("Iw2IAN9XUsQeYUrkMGP3kP59ugFDkfHg", tunnel["PreSharedKey"])
        )
    return "<ipsec_tunnel>".join([head, *blocks])


_vpn_connections.VPNConnection.customer_gateway_configuration = property(
    _customer_gateway_configuration
)

# 4-byte ASNs: AWS takes BgpAsn up to 2^31-1 and BgpAsnExtended from 2^31 to 2^32-1 (never
# both), and reports the extended one as BgpAsnExtended; moto knows BgpAsn only.
_create_customer_gateway = EC2Response.create_customer_gateway


def create_customer_gateway(self):
    extended = self._get_param("BgpAsnExtended")
    plain = self._get_param("BgpAsn")
    if extended is not None and plain is not None:
        raise InvalidParameterValue("Specify either BgpAsn or BgpAsnExtended, not both")
    if extended is not None and not (2**31 <= int(extended) <= 2**32 - 1):
        raise InvalidParameterValue(f"BgpAsnExtended {extended} is outside 2147483648-4294967295")
    if plain is not None and not (1 <= int(plain) <= 2**31 - 1):
        raise InvalidParameterValue(f"BgpAsn {plain} is outside 1-2147483647")
    result = _create_customer_gateway(self)
    if extended is not None:
        gateway = result.result["CustomerGateway"]
        gateway.bgp_asn = None
        gateway.bgp_asn_extended = str(extended)
    return result


EC2Response.create_customer_gateway = create_customer_gateway


# AWS-managed prefix lists: AWS has one of Route53's health checkers in every region
# (com.amazonaws.<region>.route53-healthchecks, owner "AWS"); moto creates only some others.
from moto.ec2.models.managed_prefixes import ManagedPrefixListBackend  # noqa: E402

_create_default_pls = ManagedPrefixListBackend.create_default_pls


def create_default_pls(self):
    _create_default_pls(self)
    self._create_aws_managed_prefix_list(
        name=f"com.amazonaws.{self.region_name}.route53-healthchecks",
        address_family="IPv4",
        entries=[
            {"Cidr": "15.177.0.0/18", "Description": "default"},
            {"Cidr": "54.243.31.192/26", "Description": "default"},
            {"Cidr": "107.23.255.0/26", "Description": "default"},
        ],
    )


ManagedPrefixListBackend.create_default_pls = create_default_pls


# A rule's prefix list keeps its description, as AWS reports it back (moto drops it, so a rule
# read back would never equal the rule written).
from moto.ec2.models.security_groups import SecurityGroup, SecurityGroupRule  # noqa: E402

_rule_init = SecurityGroupRule.__init__


def rule_init(self, *args, **kwargs):
    _rule_init(self, *args, **kwargs)
    prefix_list = kwargs.get("prefix_list_id", args[7] if len(args) > 7 else None)
    self.prefix_list_description = (prefix_list or {}).get("Description")


_flattened_rules = SecurityGroup._flattened_rules


def flattened_rules(self, rules):
    views = _flattened_rules(self, rules)
    for view in views:
        for entry in view.prefix_list_ids:
            for rule in rules:
                if (rule.prefix_list_id == entry.get("PrefixListId")
                        and (rule.from_port, rule.to_port, rule.ip_protocol)
                        == (view.from_port, view.to_port, view.ip_protocol)
                        and getattr(rule, "prefix_list_description", None)):
                    entry["Description"] = rule.prefix_list_description
    return views


SecurityGroupRule.__init__ = rule_init
SecurityGroup._flattened_rules = flattened_rules

# Asynchronous states (off unless set; seconds, fractions allowed, so tests can scale time):
# AWS launches instances `pending` and makes them `running` seconds later, refusing to
# associate an address with a pending one; VPN connections are `pending` for minutes before
# `available`; a Route53 change is PENDING before INSYNC. moto does each at once.
#   EMULATOR_INSTANCE_PENDING_S, EMULATOR_VPN_PENDING_S, EMULATOR_CHANGE_PENDING_S
import random  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from moto.ec2.exceptions import EC2ClientError  # noqa: E402
from moto.ec2.models.elastic_ip_addresses import ElasticAddressBackend  # noqa: E402
from moto.ec2.models.instances import InstanceState  # noqa: E402
from moto.ec2.models.vpn_connections import VPNConnectionBackend  # noqa: E402


def _seconds(name):
    return float(os.environ.get(name) or 0)


INSTANCE_PENDING_S = _seconds("EMULATOR_INSTANCE_PENDING_S")
VPN_PENDING_S = _seconds("EMULATOR_VPN_PENDING_S")
CHANGE_PENDING_S = _seconds("EMULATOR_CHANGE_PENDING_S")


def _settle(backend):
    """Moves what is due from its pending state to the next, before any EC2 call is served."""
    now = time.monotonic()
    for reservation in list(getattr(backend, "reservations", {}).values()):
        for instance in reservation.instances:
            due = getattr(instance, "emulator_running_at", None)
            if due is not None and now >= due:
                instance.emulator_running_at = None
                if instance._state.name == "pending":
                    instance._state = InstanceState("running", 16)
    for conn in list(getattr(backend, "vpn_connections", {}).values()):
        due = getattr(conn, "emulator_available_at", None)
        if due is not None and now >= due:
            conn.emulator_available_at = None
            if conn.state == "pending":
                conn.state = "available"


_call_action = EC2Response.call_action


def call_action(self):
    _settle(self.ec2_backend)
    return _call_action(self)


EC2Response.call_action = call_action
_run_instances_now = InstanceBackend.run_instances


def run_instances_pending(self, *args, **kwargs):
    reservation = _run_instances_now(self, *args, **kwargs)
    if INSTANCE_PENDING_S > 0:
        for instance in reservation.instances:
            instance._state = InstanceState("pending", 0)
            # Real launches vary: 0.75x to 1.25x of the set time.
            instance.emulator_running_at = time.monotonic() + INSTANCE_PENDING_S * random.uniform(0.75, 1.25)
    return reservation


InstanceBackend.run_instances = run_instances_pending


# RunInstances is idempotent by ClientToken on AWS: a request repeated with the token of one
# that succeeded (an SDK retry after a lost answer) returns the instances it launched, their
# instance profile already associated; moto launches again. (moto fills in "ABCDE" when no
# token was sent.)
_replayed_instances = contextvars.ContextVar("replayed_instances", default=())


def run_instances_idempotent(self, *args, **kwargs):
    token = kwargs.get("client_token")
    if token and token != "ABCDE":
        for reservation in list(self.reservations.values()):
            if any(getattr(i, "client_token", None) == token for i in reservation.instances):
                _replayed_instances.set(tuple(i.id for i in reservation.instances))
                return reservation
    _replayed_instances.set(())
    return run_instances_pending(self, *args, **kwargs)


InstanceBackend.run_instances = run_instances_idempotent

from moto.ec2.models.iam_instance_profile import IamInstanceProfileAssociationBackend  # noqa: E402

_associate_profile = IamInstanceProfileAssociationBackend.associate_iam_instance_profile


def associate_profile_once(self, instance_id, *args, **kwargs):
    # The RunInstances handler associates the requested profile after launching; for a
    # replayed request the association made the first time is the answer.
    if instance_id in _replayed_instances.get():
        existing = self.iam_instance_profile_associations.get(instance_id)
        if existing is not None:
            return existing
    return _associate_profile(self, instance_id, *args, **kwargs)


IamInstanceProfileAssociationBackend.associate_iam_instance_profile = associate_profile_once
_associate_address = ElasticAddressBackend.associate_address


def associate_address(self, instance=None, *args, **kwargs):
    # AWS: "InvalidInstanceID: The pending instance 'i-…' is not in a valid state for this
    # operation." (hashicorp/terraform-provider-aws#3072 retries exactly this).
    if instance is not None and instance._state.name == "pending":
        raise EC2ClientError("InvalidInstanceID",
                             f"The pending instance '{instance.id}' is not in a valid state for this operation.")
    return _associate_address(self, instance, *args, **kwargs)


ElasticAddressBackend.associate_address = associate_address
_create_vpn_connection_now = VPNConnectionBackend.create_vpn_connection


def create_vpn_connection_pending(self, *args, **kwargs):
    conn = _create_vpn_connection_now(self, *args, **kwargs)
    if VPN_PENDING_S > 0:
        conn.state = "pending"
        conn.emulator_available_at = time.monotonic() + VPN_PENDING_S
    return conn


VPNConnectionBackend.create_vpn_connection = create_vpn_connection_pending

# Each change batch gets its own id, PENDING until its time has passed (moto answers one fixed
# id, INSYNC).
_changes = {}
_changes_lock = threading.Lock()
_change_rrsets = _Route53Response.change_resource_record_sets


def change_resource_record_sets_pending(self):
    result = _change_rrsets(self)
    info = result.result["ChangeInfo"] if hasattr(result, "result") else None
    if info is not None:
        change_id = "C" + "".join(random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(13))
        info["Id"] = f"/change/{change_id}"
        with _changes_lock:
            _changes[change_id] = time.monotonic() + CHANGE_PENDING_S
        if CHANGE_PENDING_S > 0:
            info["Status"] = "PENDING"
    return result


def get_change_pending(self):
    result = _get_change(self)
    change_id = self._get_param("Id").rsplit("/", 1)[-1]
    with _changes_lock:
        due = _changes.get(change_id)
    if due is not None and time.monotonic() < due:
        result.result["ChangeInfo"]["Status"] = "PENDING"
    return result


_get_change = _Route53Response.get_change
_Route53Response.change_resource_record_sets = change_resource_record_sets_pending
_Route53Response.get_change = get_change_pending

from moto.iam.exceptions import NotFoundException as _IamNotFound  # noqa: E402
from moto.iam.models import IAMBackend  # noqa: E402


# RemoveRoleFromInstanceProfile for a role the profile does not hold: AWS answers NoSuchEntity
# (what a repeat after a lost answer meets); moto fails with an empty 500.
def remove_role_from_instance_profile(self, profile_name, role_name):
    profile = self.get_instance_profile(profile_name)
    role = self.get_role(role_name)
    if role not in profile.roles:
        raise _IamNotFound(
            f"Instance profile {profile_name} does not contain role {role_name}."
        )
    profile.roles.remove(role)


IAMBackend.remove_role_from_instance_profile = remove_role_from_instance_profile


if __name__ == "__main__":
    sys.exit(moto.server.main(sys.argv[1:]))
