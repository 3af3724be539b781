"""Turning uploaded code into a revision: unpack safely, check, detect the convention, install deps."""

from polyfn.deploy.errors import DeployError

__all__ = ["DeployError"]
