"""What the worker and the server both stand on: the network and its hardening, the stack's KMS key,
the flow-code repository and bucket, and the AWS building blocks every component uses."""
