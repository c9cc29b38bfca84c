output "vpc_id" {
  value = aws_vpc.main.id
}

output "broker_public_ips" {
  value = aws_eip.broker[*].public_ip
}

output "support_instance_ids" {
  value = aws_instance.support[*].id
}

output "vpn_connection_id" {
  value = aws_vpn_connection.backend.id
}
