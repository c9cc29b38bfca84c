# One gateway region, shaped like one gwctl region file (regions/<region>.yaml) with
# backend.yaml's stack-wide values. Defaults: gwctl's defaults (src/spec/model.rs) and the
# example backend.yaml; gen.sh sets the per-region values of the example region files.

variable "region" {
  type = string
}

variable "stack" {
  description = "backend.yaml `stack` (names and tags carry it)"
  type        = string
  default     = "mqtt-example"
}

variable "vpc_cidr" {
  type = string
}

variable "zones" {
  description = "availability zones, one public subnet each (10.X.<k+1>.0/24, as the region files)"
  type        = list(string)
}

variable "backend_cidr" {
  description = "backend.yaml `network_cidr`: route table route to the VGW, backend-only ingress"
  type        = string
  default     = "10.0.0.0/16"
}

variable "client_cidrs" {
  description = "`network.client_cidrs` (gwctl default: 0.0.0.0/0)"
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "ports" {
  description = "`brokers.ports` (gwctl defaults)"
  type = object({
    amqp       = number
    mqtt       = number
    web_mqtt   = number
    management = number
    metrics    = number
  })
  default = {
    amqp       = 5671
    mqtt       = 8883
    web_mqtt   = 15676
    management = 15671
    metrics    = 15691
  }
}

variable "broker_count" {
  type    = number
  default = 3
}

variable "broker_instance_type" {
  type    = string
  default = "c6i.large"
}

variable "root_volume" {
  description = "`brokers.root_volume` (gwctl default gp3, 20 GiB)"
  type = object({
    type = string
    size = number
  })
  default = { type = "gp3", size = 20 }
}

variable "data_volume" {
  description = "`brokers.data_volume.ebs`, attached as /dev/sdf (gwctl default gp3, 100 GiB)"
  type = object({
    type       = string
    size       = number
    iops       = optional(number)
    throughput = optional(number)
  })
  default = { type = "gp3", size = 100 }
}

variable "support_groups" {
  description = "`support`: groups of support/proxy instances (gwctl: root gp3 8 GiB, own security group)"
  type = list(object({
    name          = string
    count         = optional(number, 1)
    instance_type = optional(string, "t3.small")
  }))
  default = []
}

variable "health_check" {
  description = "`health_check` (TCP on the MQTT port; gwctl default interval 30 s, threshold 3)"
  type = object({
    interval_s        = optional(number, 30)
    failure_threshold = optional(number, 3)
  })
  default = {}
}

variable "customer_gateway_ip" {
  description = "backend.yaml `vpn.public_ip`"
  type        = string
  default     = "203.0.113.10"
}

variable "customer_gateway_asn" {
  description = "backend.yaml `vpn.bgp_asn`"
  type        = number
  default     = 65000
}

variable "zone_id" {
  type = string
}

variable "record_name" {
  description = "backend.yaml `dns.record`"
  type        = string
  default     = "mqtt.example.com"
}

variable "record_ttl" {
  description = "backend.yaml `dns.ttl`"
  type        = number
  default     = 60
}

variable "tags" {
  description = "free tags (backend.yaml and region file `tags`)"
  type        = map(string)
  default     = {}
}

variable "ami_id" {
  description = "image on plain moto (one of moto's built-in AMIs, present in every region)"
  type        = string
  default     = "ami-12c6146b"
}

variable "moto_launcher" {
  description = <<-EOT
    true: the endpoint is gwctl's moto launcher (scripts/moto_server.py), which has what plain
    moto lacks: the brokers' image is selected like gwctl does (Debian, owner 136693071363,
    debian-13-amd64-*, newest), the route table gets VGW route propagation, volumes keep
    IOPS/throughput (io2 works), tunnels keep their IPsec options. false (plain moto): those
    are left out or substituted (see README). The VPN connection's static route is left out
    either way (see main.tf).
  EOT
  type        = bool
  default     = false
}
