# Three NATS nodes with cluster routes between them, for the workers' load reports. Clients
# (4222) only from fleet members, cluster routes (6222) only between the NATS nodes. The nodes
# have fixed IPs, so they double as the fleet's gossip seeds: each also runs a lorafleet router
# that listens for HTTP on localhost only and is there to be joined.

resource "aws_security_group" "nats" {
  name        = "${var.name}-nats"
  description = "NATS: clients from the fleet, routes between NATS nodes"
  vpc_id      = var.vpc_id
}

resource "aws_security_group_rule" "clients" {
  type                     = "ingress"
  description              = "NATS clients (workers and routers)"
  security_group_id        = aws_security_group.nats.id
  source_security_group_id = var.fleet_security_group_id
  protocol                 = "tcp"
  from_port                = 4222
  to_port                  = 4222
}

resource "aws_security_group_rule" "routes" {
  type                     = "ingress"
  description              = "NATS cluster routes between NATS nodes"
  security_group_id        = aws_security_group.nats.id
  source_security_group_id = aws_security_group.nats.id
  protocol                 = "tcp"
  from_port                = 6222
  to_port                  = 6222
}

resource "aws_security_group_rule" "egress" {
  type              = "egress"
  description       = "package and binary downloads"
  security_group_id = aws_security_group.nats.id
  protocol          = "-1"
  from_port         = 0
  to_port           = 0
  cidr_blocks       = ["0.0.0.0/0"]
}

locals {
  routes = join(", ", [for ip in var.private_ips : "nats-route://${ip}:6222"])
}

resource "aws_instance" "nats" {
  count                  = 3
  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_ids[count.index % length(var.subnet_ids)]
  private_ip             = var.private_ips[count.index]
  vpc_security_group_ids = [aws_security_group.nats.id, var.fleet_security_group_id]
  iam_instance_profile   = var.instance_profile_name
  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    name         = "${var.name}-nats-${count.index}"
    routes       = local.routes
    nats_version = var.nats_version
    binary_url   = var.lorafleet_binary_url
    seeds        = var.private_ips
    key_param    = var.gossip_key_parameter
    nats_unit    = indent(6, file("${path.module}/../../../systemd/lorafleet-nats.service"))
  })
  tags = { Name = "${var.name}-nats-${count.index}" }
}
