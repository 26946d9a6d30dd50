# -*- coding: latin-1 -*-
"""Café module."""
import café
from pkg import naïve
NAME = 'pkg.modulé'
