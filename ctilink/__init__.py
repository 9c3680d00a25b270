"""ctilink: CTI middleware between PBX/ACD switches and CRM clients."""

__version__ = "0.1.0"
