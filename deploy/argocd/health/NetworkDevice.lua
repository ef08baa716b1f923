-- Argo CD health check for telco.intent.dev/v1alpha1 NetworkDevice (Lua 5.1, as gopher-lua runs it).
-- Healthy when Ready; Degraded when unreachable or misconfigured; else Progressing.
-- Install: resource.customizations.health.telco.intent.dev_NetworkDevice in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

-- Ready=False reasons that waiting cannot fix: the spec, its Secrets or the device must change.
local PERMANENT = { InvalidConfiguration = true, MissingModels = true }

local function run(o)
  local wait = pending(o)
  if wait ~= nil then
    return result("Progressing", wait)
  end
  local st = o.status
  if is(st, "Ready", "True") then
    return result("Healthy", says(st, "Ready", "session up and state in sync"))
  end
  if is(st, "Reachable", "False") then
    return result("Degraded", "unreachable: " .. says(st, "Reachable", "no gNMI session"))
  end
  if is(st, "Degraded", "True") then
    return result("Degraded", says(st, "Degraded", "degraded"))
  end
  local why = reason(st, "Ready")
  if is(st, "Ready", "False") and why ~= nil and PERMANENT[why] then
    return result("Degraded", says(st, "Ready", why))
  end
  return result("Progressing", says(st, "Ready", "connecting"))
end

return run(obj)
