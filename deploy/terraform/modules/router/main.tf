# Routers: an autoscaling group of CPU instances behind a Network Load Balancer whose health
# check is /readyz. Routers are stateless; any one can take any request.

resource "aws_security_group" "router" {
  name        = "${var.name}-router"
  description = "lorafleet routers: HTTP from the load balancer's clients"
  vpc_id      = var.vpc_id
}

resource "aws_security_group_rule" "http" {
  type              = "ingress"
  description       = "router HTTP (NLB preserves client addresses)"
  security_group_id = aws_security_group.router.id
  protocol          = "tcp"
  from_port         = 8080
  to_port           = 8080
  cidr_blocks       = var.allowed_cidrs
}

resource "aws_lb" "router" {
  name               = "${var.name}-router"
  load_balancer_type = "network"
  internal           = var.internal
  subnets            = var.public_subnet_ids
}

resource "aws_lb_target_group" "router" {
  name     = "${var.name}-router"
  port     = 8080
  protocol = "TCP"
  vpc_id   = var.vpc_id
  health_check {
    protocol            = "HTTP"
    path                = "/readyz"
    port                = "8080"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
  deregistration_delay = 30
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.router.arn
  port              = 80
  protocol          = "TCP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.router.arn
  }
}

resource "aws_launch_template" "router" {
  name_prefix   = "${var.name}-router-"
  image_id      = var.ami_id
  instance_type = var.instance_type
  iam_instance_profile {
    name = var.instance_profile_name
  }
  vpc_security_group_ids = [aws_security_group.router.id, var.fleet_security_group_id]
  user_data = base64encode(templatefile("${path.module}/cloud-init.yaml.tftpl", {
    binary_url           = var.lorafleet_binary_url
    join                 = var.gossip_seeds[0]
    nats_urls            = var.nats_urls
    base_model           = var.base_model
    gossip_key_parameter = var.gossip_key_parameter
    router_unit          = indent(6, file("${path.module}/../../../systemd/lorafleet-router.service"))
  }))
}

resource "aws_autoscaling_group" "router" {
  name                = "${var.name}-router"
  min_size            = var.min_size
  max_size            = var.max_size
  vpc_zone_identifier = var.private_subnet_ids
  target_group_arns   = [aws_lb_target_group.router.arn]
  health_check_type   = "ELB"
  launch_template {
    id      = aws_launch_template.router.id
    version = aws_launch_template.router.latest_version
  }
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
    }
  }
}
