-- Argo CD health check for telco.intent.dev/v1alpha1 NetworkDevice (Lua 5.1, as gopher-lua runs it).
-- Healthy when Ready; Degraded when Stalled (unreachable, refused credentials, misconfigured, missing
-- models); else Progressing (connecting, syncing).
-- Install: resource.customizations.health.telco.intent.dev_NetworkDevice in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local function run(o)
  local verdict = common(o)
  if verdict ~= nil then
    return verdict
  end
  local st = o.status
  if is(st, "Ready", "True") then
    return result("Healthy", says(st, "Ready", "session up and state in sync"))
  end
  return result("Progressing", says(st, "Ready", "connecting"))
end

return run(obj)
