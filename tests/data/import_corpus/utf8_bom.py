import after_bom
NAME = 'pkg.modül'
