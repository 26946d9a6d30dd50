import before_error
values = [
    1,
    2,

def later():
    import after_the_bracket
    return __import__("dynamic.after", fromlist=["x"])
