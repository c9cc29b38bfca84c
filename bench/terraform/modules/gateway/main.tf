# One gateway region as gwctl builds it (leveled with gwctl on 2026-12-03): every resource and
# attribute below is the one `gwctl export terraform` writes for a region gwctl created
# (src/plan/terraform.rs, src/plan/desired.rs, src/plan/dns.rs), except where plain moto lacks
# an API (see var.moto_launcher and README.md).
terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

locals {
  # gwctl: tags_for() -- Name "<stack>-<region>-<name>", ownership tags, free tags. Terraform
  # keeps ownership in its state; the same number of tags, in its own keys.
  base_tags = merge(var.tags, {
    ManagedBy = "terraform"
    Stack     = var.stack
    Region    = var.region
  })
  tag = { for id in local.ids : id => merge(local.base_tags, {
    Name = "${var.stack}-${var.region}-${split("/", id)[1]}"
    Id   = id
  }) }
  ids = concat(
    [
      "iam_role/brokers", "instance_profile/brokers", "vpc/main", "internet_gateway/main",
      "vpn_gateway/main", "customer_gateway/backend", "vpn_connection/backend",
      "route_table/public", "security_group/brokers", "security_group/support",
    ],
    [for s in local.secret_names : "ssm_parameter/${s}"],
    [for n in local.brokers : "certificate/${n}"],
    [for z in var.zones : "subnet/${z}"],
    [for n in local.brokers : "instance/${n}"],
    [for n in local.brokers : "elastic_ip/${n}"],
    [for n in local.brokers : "health_check/${n}"],
    [for s in local.support : "instance/${s.name}"],
  )

  brokers = [for i in range(var.broker_count) : "broker-${i + 1}"]
  # gwctl: `support` groups, instances "<group>-<n>", spread over the subnets like brokers.
  support = flatten([for g in var.support_groups : [
    for i in range(g.count) : { name = "${g.name}-${i + 1}", n = i, instance_type = g.instance_type }
  ]])
  cluster_name = "gw-${var.region}"

  # gwctl: render::ssm_prefix = /gwctl/<stack>/<region>; this stack's own prefix.
  ssm_prefix   = "/tf/${var.stack}/${var.region}"
  secret_names = ["admin_password", "erlang_cookie", "federation_password"]
  iam_name     = "tf-${var.stack}-${var.region}"

  image = var.moto_launcher ? data.aws_ami.debian[0].id : var.ami_id

  # Stand-ins: gwctl renders a ~10 KB gzip'd cloud-init per broker (RabbitMQ config,
  # certificates, device authorizer); what it contains does not change the AWS calls.
  broker_user_data  = <<-EOT
    #cloud-config
    package_update: false
    runcmd:
      - echo "mqtt broker bootstrap for ${var.region} (cluster ${local.cluster_name})" > /etc/motd
  EOT
  support_user_data = <<-EOT
    #cloud-config
    package_update: false
    runcmd:
      - echo "support instance for ${var.region}" > /etc/motd
  EOT

  # gwctl: vpn.tunnels defaults (IKEv2 only, AES256(-GCM), SHA2, DH 14-16/19-21), both tunnels.
  tunnel = {
    ike_versions = ["ikev2"]
    encryption   = ["AES256", "AES256-GCM-16"]
    integrity    = ["SHA2-256", "SHA2-384", "SHA2-512"]
    dh_groups    = [14, 15, 16, 19, 20, 21]
  }
  # plain moto forgets tunnel options (reads back empty): not sent there.
  tunnel_opt = var.moto_launcher ? local.tunnel : { ike_versions = null, encryption = null, integrity = null, dh_groups = null }

  # plain moto drops a block device's Iops/Throughput at RunInstances (io2 then fails): there
  # the data volume is a plain gp3 of the same size.
  data_volume = var.moto_launcher ? var.data_volume : {
    type = var.data_volume.type == "io2" ? "gp3" : var.data_volume.type
    size = var.data_volume.size, iops = null, throughput = null
  }
}

# gwctl selects the newest image matching the region file's `ami` (DescribeImages); plain moto
# has no Debian images, so there var.ami_id (a built-in moto AMI) is used without a lookup.
data "aws_ami" "debian" {
  count       = var.moto_launcher ? 1 : 0
  owners      = ["136693071363"]
  most_recent = true
  filter {
    name   = "name"
    values = ["debian-13-amd64-*"]
  }
}

# ---------------------------------------------------------------- IAM
resource "aws_iam_role" "brokers" {
  name               = local.iam_name
  path               = "/tf/"
  description        = "brokers: read their SSM parameters, find their peers"
  assume_role_policy = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"ec2.amazonaws.com\"},\"Action\":\"sts:AssumeRole\"}]}"
  tags               = local.tag["iam_role/brokers"]
}

resource "aws_iam_role_policy" "brokers" {
  name = "brokers"
  role = aws_iam_role.brokers.name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadOwnSecrets"
        Effect   = "Allow"
        Action   = ["ssm:GetParameter", "ssm:GetParameters"]
        Resource = "arn:aws:ssm:${var.region}:*:parameter${local.ssm_prefix}/*"
      },
      {
        Sid      = "PeerDiscovery"
        Effect   = "Allow"
        Action   = ["ec2:DescribeInstances"]
        Resource = "*"
      }
    ]
  })
}

resource "aws_iam_instance_profile" "brokers" {
  name = local.iam_name
  path = "/tf/"
  role = aws_iam_role.brokers.name
  tags = local.tag["instance_profile/brokers"]
}

# ---------------------------------------------------------------- SSM
# gwctl: one SecureString per secret (admin password, Erlang cookie, federation password) and
# one per broker holding its server certificate and key (issued by gwctl with the stack CA;
# here a stand-in value: the mirror has only the aws provider).
resource "aws_ssm_parameter" "secret" {
  for_each    = toset(local.secret_names)
  name        = "${local.ssm_prefix}/${each.key}"
  type        = "SecureString"
  description = "read by the region's brokers at boot"
  value       = "${each.key}-${var.region}-0123456789abcdef"
  tags        = local.tag["ssm_parameter/${each.key}"]
}

resource "aws_ssm_parameter" "tls" {
  for_each    = toset(local.brokers)
  name        = "${local.ssm_prefix}/tls/${each.key}"
  type        = "SecureString"
  description = "read by the region's brokers at boot"
  value       = "-----BEGIN CERTIFICATE-----stand-in ${var.region} ${each.key}-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----stand-in-----END PRIVATE KEY-----"
  tags        = local.tag["certificate/${each.key}"]
}

# ---------------------------------------------------------------- network
resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = local.tag["vpc/main"]
}

resource "aws_subnet" "zone" {
  count                   = length(var.zones)
  vpc_id                  = aws_vpc.main.id
  availability_zone       = var.zones[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, count.index + 1)
  map_public_ip_on_launch = true
  tags                    = local.tag["subnet/${var.zones[count.index]}"]
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id
  tags   = local.tag["internet_gateway/main"]
}

# gwctl: one route table: default route to the IGW, the VPN's static routes (the backend
# network) to the VGW, VGW route propagation, associated with every subnet.
resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main.id
  }
  route {
    cidr_block = var.backend_cidr
    gateway_id = aws_vpn_gateway.main.id
  }
  # moto gap: plain moto has no EnableVgwRoutePropagation (HTTP 500).
  propagating_vgws = var.moto_launcher ? [aws_vpn_gateway.main.id] : []
  tags             = local.tag["route_table/public"]
}

resource "aws_route_table_association" "zone" {
  count          = length(var.zones)
  subnet_id      = aws_subnet.zone[count.index].id
  route_table_id = aws_route_table.public.id
}

# ---------------------------------------------------------------- security
# gwctl (plan/desired.rs): devices' MQTT over TLS and WSS from client_cidrs; AMQPS,
# management and metrics from the backend; epmd and distribution between brokers. AWS's
# default egress rule stays (gwctl keeps it; Terraform would remove it unless declared).
resource "aws_security_group" "brokers" {
  name        = "tf-${var.stack}-${var.region}-brokers"
  description = "${var.stack} ${var.region} RabbitMQ brokers"
  vpc_id      = aws_vpc.main.id
  tags        = local.tag["security_group/brokers"]

  ingress {
    description = "RabbitMQ epmd between brokers"
    from_port   = 4369
    to_port     = 4369
    protocol    = "tcp"
    self        = true
  }
  ingress {
    description = "AMQPS federation from the backend"
    from_port   = var.ports.amqp
    to_port     = var.ports.amqp
    protocol    = "tcp"
    cidr_blocks = [var.backend_cidr]
  }
  ingress {
    description = "MQTT over TLS from clients"
    from_port   = var.ports.mqtt
    to_port     = var.ports.mqtt
    protocol    = "tcp"
    cidr_blocks = var.client_cidrs
  }
  ingress {
    description = "management API (HTTPS) from the backend"
    from_port   = var.ports.management
    to_port     = var.ports.management
    protocol    = "tcp"
    cidr_blocks = [var.backend_cidr]
  }
  ingress {
    description = "MQTT over WSS from clients"
    from_port   = var.ports.web_mqtt
    to_port     = var.ports.web_mqtt
    protocol    = "tcp"
    cidr_blocks = var.client_cidrs
  }
  ingress {
    description = "Prometheus metrics (HTTPS) from the backend"
    from_port   = var.ports.metrics
    to_port     = var.ports.metrics
    protocol    = "tcp"
    cidr_blocks = [var.backend_cidr]
  }
  ingress {
    description = "RabbitMQ distribution between brokers"
    from_port   = 25672
    to_port     = 25672
    protocol    = "tcp"
    self        = true
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# gwctl creates it only when the region file has `support` groups.
resource "aws_security_group" "support" {
  count       = length(local.support) > 0 ? 1 : 0
  name        = "tf-${var.stack}-${var.region}-support"
  description = "${var.stack} ${var.region} support instances"
  vpc_id      = aws_vpc.main.id
  tags        = local.tag["security_group/support"]

  ingress {
    description = "MQTT over TLS from clients"
    from_port   = var.ports.mqtt
    to_port     = var.ports.mqtt
    protocol    = "tcp"
    cidr_blocks = var.client_cidrs
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# ---------------------------------------------------------------- VPN
resource "aws_customer_gateway" "backend" {
  bgp_asn    = tostring(var.customer_gateway_asn)
  ip_address = var.customer_gateway_ip
  type       = "ipsec.1"
  tags       = local.tag["customer_gateway/backend"]
}

# gwctl: CreateVpnGateway + AttachVpnGateway, waiting until attached (vpc_id does the same).
resource "aws_vpn_gateway" "main" {
  vpc_id = aws_vpc.main.id
  tags   = local.tag["vpn_gateway/main"]
}

resource "aws_vpn_connection" "backend" {
  customer_gateway_id = aws_customer_gateway.backend.id
  vpn_gateway_id      = aws_vpn_gateway.main.id
  type                = "ipsec.1"
  static_routes_only  = true

  tunnel1_ike_versions                 = local.tunnel_opt.ike_versions
  tunnel1_phase1_encryption_algorithms = local.tunnel_opt.encryption
  tunnel1_phase1_integrity_algorithms  = local.tunnel_opt.integrity
  tunnel1_phase1_dh_group_numbers      = local.tunnel_opt.dh_groups
  tunnel1_phase2_encryption_algorithms = local.tunnel_opt.encryption
  tunnel1_phase2_integrity_algorithms  = local.tunnel_opt.integrity
  tunnel1_phase2_dh_group_numbers      = local.tunnel_opt.dh_groups
  tunnel2_ike_versions                 = local.tunnel_opt.ike_versions
  tunnel2_phase1_encryption_algorithms = local.tunnel_opt.encryption
  tunnel2_phase1_integrity_algorithms  = local.tunnel_opt.integrity
  tunnel2_phase1_dh_group_numbers      = local.tunnel_opt.dh_groups
  tunnel2_phase2_encryption_algorithms = local.tunnel_opt.encryption
  tunnel2_phase2_integrity_algorithms  = local.tunnel_opt.integrity
  tunnel2_phase2_dh_group_numbers      = local.tunnel_opt.dh_groups

  tags = local.tag["vpn_connection/backend"]

  # moto gap (plain moto): DescribeVpnConnections does not return Options.StaticRoutesOnly,
  # so the value reads back as false and would force a replacement on every plan. (The value
  # is still sent as true on create; the launcher reports it, making this a no-op there.)
  lifecycle {
    ignore_changes = [static_routes_only]
  }
}

# gwctl also adds the VPN connection's static route (CreateVpnConnectionRoute, the backend
# network). Not expressible here: plain moto has no CreateVpnConnectionRoute (HTTP 500), and
# even on gwctl's launcher, which has it, aws_vpn_connection_route waits for the route through
# DescribeVpnConnections filtered by `route.destination-cidr-block`, a filter moto lacks (HTTP
# 500 until the provider's timeout). The route table's static route to the VGW stands in.

# ---------------------------------------------------------------- compute
# gwctl launches brokers only once their secrets and the route table exist (Desired::after).
resource "aws_instance" "broker" {
  count                  = var.broker_count
  ami                    = local.image
  instance_type          = var.broker_instance_type
  subnet_id              = aws_subnet.zone[count.index % length(var.zones)].id
  vpc_security_group_ids = [aws_security_group.brokers.id]
  iam_instance_profile   = aws_iam_instance_profile.brokers.name
  user_data              = local.broker_user_data

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  root_block_device {
    volume_type           = var.root_volume.type
    volume_size           = var.root_volume.size
    encrypted             = true
    delete_on_termination = true
  }
  ebs_block_device {
    device_name           = "/dev/sdf"
    volume_type           = local.data_volume.type
    volume_size           = local.data_volume.size
    iops                  = local.data_volume.iops
    throughput            = local.data_volume.throughput
    encrypted             = true
    delete_on_termination = true
  }

  # gwctl-cluster: the tag RabbitMQ's AWS peer discovery looks for (rabbitmq.conf).
  tags        = merge(local.tag["instance/${local.brokers[count.index]}"], { gwctl-cluster = local.cluster_name })
  volume_tags = merge(local.tag["instance/${local.brokers[count.index]}"], { gwctl-cluster = local.cluster_name })

  depends_on = [aws_ssm_parameter.secret, aws_ssm_parameter.tls, aws_route_table_association.zone]
}

resource "aws_instance" "support" {
  count                  = length(local.support)
  ami                    = local.image
  instance_type          = local.support[count.index].instance_type
  subnet_id              = aws_subnet.zone[local.support[count.index].n % length(var.zones)].id
  vpc_security_group_ids = [aws_security_group.support[0].id]
  iam_instance_profile   = aws_iam_instance_profile.brokers.name
  user_data              = local.support_user_data

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  root_block_device {
    volume_type           = "gp3"
    volume_size           = 8
    encrypted             = true
    delete_on_termination = true
  }

  tags        = local.tag["instance/${local.support[count.index].name}"]
  volume_tags = local.tag["instance/${local.support[count.index].name}"]

  depends_on = [aws_route_table_association.zone]
}

resource "aws_eip" "broker" {
  count      = var.broker_count
  domain     = "vpc"
  instance   = aws_instance.broker[count.index].id
  tags       = local.tag["elastic_ip/${local.brokers[count.index]}"]
  depends_on = [aws_internet_gateway.main]
}

# ---------------------------------------------------------------- Route53 (src/plan/dns.rs)
# One TCP check per broker on its Elastic IP and the MQTT port.
resource "aws_route53_health_check" "broker" {
  count             = var.broker_count
  type              = "TCP"
  ip_address        = aws_eip.broker[count.index].public_ip
  port              = var.ports.mqtt
  request_interval  = var.health_check.interval_s
  failure_threshold = var.health_check.failure_threshold
  tags              = local.tag["health_check/${local.brokers[count.index]}"]
}

# <region>.<record>: one multivalue-answer A record per broker, each with its check.
resource "aws_route53_record" "broker" {
  count                            = var.broker_count
  zone_id                          = var.zone_id
  name                             = "${var.region}.${var.record_name}"
  type                             = "A"
  set_identifier                   = local.brokers[count.index]
  multivalue_answer_routing_policy = true
  ttl                              = var.record_ttl
  health_check_id                  = aws_route53_health_check.broker[count.index].id
  records                          = [aws_eip.broker[count.index].public_ip]
}

# <record>: the region's latency alias to <region>.<record>, following its health.
resource "aws_route53_record" "latency" {
  zone_id        = var.zone_id
  name           = var.record_name
  type           = "A"
  set_identifier = var.region
  latency_routing_policy {
    region = var.region
  }
  alias {
    name                   = "${var.region}.${var.record_name}"
    zone_id                = var.zone_id
    evaluate_target_health = true
  }
  depends_on = [aws_route53_record.broker]
}

# _gwctl.<region>.<record>: gwctl's ownership mark of the two above (records carry no tags);
# kept so the zone holds the same records.
resource "aws_route53_record" "owner" {
  zone_id = var.zone_id
  name    = "_gwctl.${var.region}.${var.record_name}"
  type    = "TXT"
  ttl     = 300
  records = ["heritage=terraform,stack=${var.stack},region=${var.region}"]
}
