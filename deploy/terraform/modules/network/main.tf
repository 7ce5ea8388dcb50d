# The fleet's network: a VPC with public subnets (load balancer, NAT) and private subnets
# (every instance), or an existing VPC; and the security group every fleet member carries,
# which opens memberlist gossip (7946 TCP and UDP) between members only.

locals {
  create = var.existing_vpc_id == null
}

resource "aws_vpc" "this" {
  count                = local.create ? 1 : 0
  cidr_block           = var.cidr_block
  enable_dns_hostnames = true
  tags                 = { Name = var.name }
}

resource "aws_internet_gateway" "this" {
  count  = local.create ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = { Name = var.name }
}

resource "aws_subnet" "public" {
  count                   = local.create ? length(var.azs) : 0
  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = var.azs[count.index]
  cidr_block              = cidrsubnet(var.cidr_block, 8, count.index)
  map_public_ip_on_launch = true
  tags                    = { Name = "${var.name}-public-${var.azs[count.index]}" }
}

resource "aws_subnet" "private" {
  count             = local.create ? length(var.azs) : 0
  vpc_id            = aws_vpc.this[0].id
  availability_zone = var.azs[count.index]
  cidr_block        = cidrsubnet(var.cidr_block, 8, 100 + count.index)
  tags              = { Name = "${var.name}-private-${var.azs[count.index]}" }
}

resource "aws_eip" "nat" {
  count  = local.create ? 1 : 0
  domain = "vpc"
  tags   = { Name = "${var.name}-nat" }
}

resource "aws_nat_gateway" "this" {
  count         = local.create ? 1 : 0
  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = { Name = var.name }
}

resource "aws_route_table" "public" {
  count  = local.create ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this[0].id
  }
  tags = { Name = "${var.name}-public" }
}

resource "aws_route_table" "private" {
  count  = local.create ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this[0].id
  }
  tags = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "public" {
  count          = local.create ? length(var.azs) : 0
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_route_table_association" "private" {
  count          = local.create ? length(var.azs) : 0
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

locals {
  vpc_id             = local.create ? aws_vpc.this[0].id : var.existing_vpc_id
  private_subnet_ids = local.create ? aws_subnet.private[*].id : var.existing_private_subnet_ids
  public_subnet_ids  = local.create ? aws_subnet.public[*].id : var.existing_public_subnet_ids
}

resource "aws_security_group" "fleet" {
  name        = "${var.name}-fleet"
  description = "lorafleet members: gossip between members only"
  vpc_id      = local.vpc_id
}

resource "aws_security_group_rule" "gossip_tcp" {
  type                     = "ingress"
  description              = "memberlist gossip (TCP) from fleet members"
  security_group_id        = aws_security_group.fleet.id
  source_security_group_id = aws_security_group.fleet.id
  protocol                 = "tcp"
  from_port                = 7946
  to_port                  = 7946
}

resource "aws_security_group_rule" "gossip_udp" {
  type                     = "ingress"
  description              = "memberlist gossip (UDP) from fleet members"
  security_group_id        = aws_security_group.fleet.id
  source_security_group_id = aws_security_group.fleet.id
  protocol                 = "udp"
  from_port                = 7946
  to_port                  = 7946
}

resource "aws_security_group_rule" "egress" {
  type              = "egress"
  description       = "downloads (binary, model, adapters) and AWS APIs"
  security_group_id = aws_security_group.fleet.id
  protocol          = "-1"
  from_port         = 0
  to_port           = 0
  cidr_blocks       = ["0.0.0.0/0"]
}
