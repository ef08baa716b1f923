-- Argo CD health check for telco.intent.dev/v1alpha1 BillingAccount (Lua 5.1, as gopher-lua runs it).
-- Healthy when Ready (a Suspended or Closed account is still Healthy; the message says so); Degraded
-- when Stalled (an invalid spec, an outstanding balance over its creditLimit); else Progressing.
-- Install: resource.customizations.health.telco.intent.dev_BillingAccount in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local function run(o)
  local verdict = common(o)
  if verdict ~= nil then
    return verdict
  end
  local st = o.status
  if is(st, "Ready", "True") then
    return result("Healthy", says(st, "Ready", "active"))
  end
  return result("Progressing", says(st, "Ready", "waiting for the controller"))
end

return run(obj)
