"""Plain import statements in every spelling."""
import os
import os.path
import a, b as c
import a.b.c as d
import  x . y . z
import json as _json, xml.etree.ElementTree as ET


def main():
    return os, c, d, _json, ET
