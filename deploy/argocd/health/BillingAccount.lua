-- Argo CD health check for telco.intent.dev/v1alpha1 BillingAccount (Lua 5.1, as gopher-lua runs it).
-- Healthy when Ready (a Suspended or Closed account is still Healthy; the message says so); Degraded
-- when its spec is invalid or its outstanding balance exceeds its creditLimit.
-- Install: resource.customizations.health.telco.intent.dev_BillingAccount in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local function run(o)
  local wait = pending(o)
  if wait ~= nil then
    return result("Progressing", wait)
  end
  local st = o.status
  if is(st, "CreditLimit", "False") then
    return result("Degraded", says(st, "CreditLimit", "over the credit limit"))
  end
  if is(st, "Ready", "True") then
    return result("Healthy", says(st, "Ready", "active"))
  end
  if is(st, "Ready", "False") then
    return result("Degraded", says(st, "Ready", "invalid"))
  end
  return result("Progressing", says(st, "Ready", "waiting for the controller"))
end

return run(obj)
