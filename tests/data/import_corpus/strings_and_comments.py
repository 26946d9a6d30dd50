# import commented_out
# from commented import out
"""Module docstring.

    import in_docstring
    from in_docstring import name
"""

print("from x import y")
print('import os')
message = """
import in_triple_double
"""
other = '''from in_triple_single import thing'''
raw = r"import in_raw \" still in raw"
data = b"import in_bytes"
escaped = 'it\'s import in_escaped'
x = obj.import_thing
y = obj.importer()
import_thing = 1
call(imports=1, import_=2)


def generator():
    yield from range(3)
    raise ValueError("bad") from None


import real_import  # import in_trailing_comment
