#!/bin/sh
# A container has no init system: packages must not start their services at install.
exit 101
