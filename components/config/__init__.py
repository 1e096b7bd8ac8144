"""The stack's configuration: each concern's keys read and validated in a module of their own, and
`settings.load_settings`, which reads them all once before any resource is declared."""
