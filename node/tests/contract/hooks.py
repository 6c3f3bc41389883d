"""Schemathesis hooks for dispatch's contract run: the fuzzing identity is protected
from the fuzzer itself (it may not log itself out, revoke its own token or key)."""
import base64, json, os
import schemathesis

def _claims(token):
    def part(i):
        s = token.split(".")[i]
        return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    try:
        return part(0).get("kid"), part(1)
    except Exception:
        return None, {}

_TOKEN = os.environ.get("DISPATCH_TOKEN", "")
_KID, _CLAIMS = _claims(_TOKEN) if _TOKEN else (None, {})
_PROTECTED = {"username": _CLAIMS.get("sub"), "jti": _CLAIMS.get("jti"), "kid": _KID}

@schemathesis.hook
def before_call(ctx, case, **kwargs):
    for name, value in _PROTECTED.items():
        if value and case.path_parameters and case.path_parameters.get(name) == value:
            case.path_parameters[name] = value + "-not-the-fuzzer"
