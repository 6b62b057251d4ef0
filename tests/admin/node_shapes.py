"""The Node service's admin API answers, written down as shapes (our own fixtures, derived
by reading the Node source, justlovemaki/AIClient-2-API; each cites where it comes from).

A shape is: a type (or a tuple of types) the value must be an instance of; a dict, whose
keys must be exactly the value's keys (a key ending in ``?`` may be absent); a one-item
list, every item of the value matching it; :data:`NODE`, a provider node; :data:`ANY`.
:func:`mismatches` lists where a value departs from a shape (``[]``: it conforms).
"""

from __future__ import annotations

from typing import Any

ANY = object()
NODE = object()
"""A ``provider_pools.json`` node: a dict with ``uuid`` and the health fields."""
OPT_STR = (str, type(None))
NUMBER = (int, float)

# -- src/ui-modules/auth.js: handleLoginRequest --------------------------------------------
LOGIN_OK = {"success": bool, "message": str, "token": str, "expiresIn": str}
LOGIN_REFUSED = {"success": bool, "message": str, "messageCode": str, "messageParams?": dict}
LOGIN_WRONG = {**LOGIN_REFUSED, "messageParams": {"count": int}}
LOGIN_LOCKING = {**LOGIN_REFUSED, "messageParams": {"time": int}}

# -- src/services/ui-manager.js: the session check of every other /api path ----------------
# {error: {message, code: 'UNAUTHORIZED'}}; cfgstore adds nothing to it.
UNAUTHORIZED = {"error": {"message": str, "code": str}}

# -- any {error: {message}} answer: cfgstore adds a machine "code", and "fields" (the
# request fields at fault) and "messageCode" where the Node service has one ---------------
ERROR = {"error": {"message": str, "code": str, "fields?": dict, "messageCode?": str}}

# -- src/ui-modules/system-api.js: handleHealthCheck ----------------------------------------
HEALTH = {"status": str, "timestamp": int}

# -- src/ui-modules/config-api.js -----------------------------------------------------------
CONFIG_UPDATED = {"success": bool, "message": str, "details": str}  # handleUpdateConfig
RELOADED = {  # handleReloadConfig
    "success": bool,
    "message": str,
    "details": {"configReloaded": bool, "configPath": str, "providerPoolsPath": OPT_STR},
}
PASSWORD_CHANGED = {"success": bool, "message": str}  # handleUpdateAdminPassword
CONFIG_ALWAYS = ("REQUIRED_API_KEY", "systemPrompt", "isDefaultPassword", "HOST", "SERVER_PORT")
"""handleGetConfig: a flat object of whitelisted keys; these are always there."""

# -- src/ui-modules/provider-api.js ---------------------------------------------------------
PROVIDERS = {"providers": dict, "supportedProviders": [str]}  # handleGetProviders
PROVIDER_TYPE = {  # handleGetProviderType
    "providerType": str,
    "providers": [NODE],
    "totalCount": int,
    "healthyCount": int,
}
ADDED = {"success": bool, "message": str, "provider": NODE, "providerType": str}
UPDATED = {"success": bool, "message": str, "provider": NODE}  # update, disable/enable
DELETED = {"success": bool, "message": str, "deletedProvider": NODE}
RESET = {
    "success": bool,
    "message": str,
    "resetCount": int,
    "totalCount": int,
    "providerType": str,
}
NONE_TO_DELETE = {"success": bool, "message": str, "deletedCount": int, "remainingCount": int}
DELETED_UNHEALTHY = {
    **NONE_TO_DELETE,
    "deletedProviders": [{"uuid": str, "customName": OPT_STR}],
}
NONE_TO_REFRESH = {"success": bool, "message": str, "refreshedCount": int, "totalCount": int}
REFRESHED_UNHEALTHY = {
    **NONE_TO_REFRESH,
    "refreshedProviders": [{"oldUuid": str, "newUuid": str, "customName": OPT_STR}],
}
UUID_REFRESHED = {
    "success": bool,
    "message": str,
    "oldUuid": str,
    "newUuid": str,
    "provider": NODE,
}
TYPE_CHECKED = {  # handleHealthCheck
    "success": bool,
    "message": str,
    "successCount": int,
    "failCount": int,
    "totalCount": int,
    "results": [
        {"uuid": str, "success": bool, "modelName": OPT_STR, "message": str, "isAuthError?": bool}
    ],
}
NODE_CHECKED = {  # handleSingleProviderHealthCheck
    "success": bool,
    "providerType": str,
    "uuid": str,
    "healthy": bool,
    "modelName": OPT_STR,
    "message": str,
    "isAuthError": bool,
}
LINKED = {  # handleQuickLinkProvider
    "success": bool,
    "message": str,
    "successCount": int,
    "failCount": int,
    "results": [
        {
            "filePath": str,
            "success": bool,
            "providerType?": str,
            "displayName?": str,
            "provider?": NODE,
            "error?": str,
        }
    ],
}

# -- src/ui-modules/event-broadcast.js: handleUploadOAuthCredentials ------------------------
UPLOADED = {
    "success": bool,
    "message": str,
    "filePath": str,
    "originalName": str,
    "provider": str,
}

# -- src/ui-modules/config-scanner.js: analyzeOAuthFile, getFileUsageInfo -------------------
USAGE_DETAIL = {
    "type": str,
    "location": str,
    "providerType?": str,
    "providerIndex?": int,
    "nodeName?": OPT_STR,
    "uuid?": str,
    "isHealthy?": bool,
    "isDisabled?": bool,
    "configKey": str,
}
CONFIG_FILE = {
    "name": str,
    "path": str,
    "size": int,
    "type": str,
    "provider": str,
    "extension": str,
    "modified": OPT_STR,  # cfgstore: null (the store keeps no file times)
    "expiresAt": OPT_STR,
    "expiresIn": (int, type(None)),
    "isValid": bool,
    "errorMessage": str,
    "isUsed": bool,
    "usageInfo": {"isUsed": bool, "usageType": OPT_STR, "usageDetails": [USAGE_DETAIL]},
    "preview": str,
}

# -- src/ui-modules/upload-config-api.js ----------------------------------------------------
VIEWED = {"path": str, "content": str, "size": int, "modified": OPT_STR, "name": str}
FILE_DELETED = {"success": bool, "message": str, "filePath": str}  # handleDeleteConfigFile
NONE_UNBOUND = {"success": bool, "message": str, "deletedCount": int, "deletedFiles": [str]}
UNBOUND_DELETED = {**NONE_UNBOUND, "failedCount": int, "failedFiles": [dict]}

# -- src/ui-modules/plugin-api.js, src/core/plugin-manager.js: getPluginList ----------------
PLUGINS = {"plugins": [dict]}
TOGGLED = {"success": bool, "message": str, "plugin": {"name": str, "enabled": bool}}

# -- src/ui-modules/usage-api.js: handleGetUsage --------------------------------------------
USAGE = {"timestamp": OPT_STR, "providers": dict, "serverTime": str, "fromCache?": bool}

# -- src/ui-modules/custom-models-api.js ----------------------------------------------------
MODEL_SAVED = {"success": bool, "model": dict}
MODEL_DELETED = {"success": bool, "deletedModel": dict}


def mismatches(value: Any, shape: Any, where: str = "$") -> list[str]:
    """Where ``value`` departs from ``shape`` (see the module docstring)."""
    if shape is ANY:
        return []
    if shape is NODE:
        if not isinstance(value, dict) or not isinstance(value.get("uuid"), str):
            return [f"{where}: not a node: {value!r}"]
        return [] if "isHealthy" in value else [f"{where}: a node without isHealthy"]
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        problems = []
        wanted = {k.rstrip("?"): k.endswith("?") for k in shape}
        for key in value.keys() - wanted.keys():
            problems.append(f"{where}.{key}: not in the Node service's answer")
        for key, optional in wanted.items():
            if key not in value:
                if not optional:
                    problems.append(f"{where}.{key}: missing")
                continue
            inner = shape[key + "?" if optional else key]
            problems += mismatches(value[key], inner, f"{where}.{key}")
        return problems
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        return [
            p for i, item in enumerate(value) for p in mismatches(item, shape[0], f"{where}[{i}]")
        ]
    if isinstance(value, bool) and shape in (int, float, NUMBER):
        return [f"{where}: a boolean where a number is expected"]
    return [] if isinstance(value, shape) else [f"{where}: {value!r} is not {shape}"]
