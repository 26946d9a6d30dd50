# Python 2 syntax still yields its imports (the file may be scanned even if
# it cannot run on the interpreter the tests use).
print "hello"
exec "code"
import legacy.module
from legacy import thing
x = ur"old prefix"
y = `backticks`
