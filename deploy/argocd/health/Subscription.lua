-- Argo CD health check for telco.intent.dev/v1alpha1 Subscription (Lua 5.1, as gopher-lua runs it).
-- Progressing until the controller caught up; then the TMF637 state and the conditions decide.
-- Install: resource.customizations.health.telco.intent.dev_Subscription in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local function run(o)
  local wait = pending(o)
  if wait ~= nil then
    return result("Progressing", wait)
  end
  local st = o.status
  local state = st.state
  if is(st, "Degraded", "True") then
    return result("Degraded", says(st, "Degraded", "degraded"))
  end
  if state == "aborted" then
    return result("Degraded", "aborted: " .. says(st, "Ready", "provisioning failed permanently"))
  end
  if state == "suspended" then
    if is(st, "PaymentHold", "True") then
      return result("Suspended", "suspended for non-payment: " .. says(st, "PaymentHold", "invoices overdue"))
    end
    if type(st.billing) == "table" and type(st.billing.paymentHold) == "table" then
      return result("Suspended", "suspended for non-payment")
    end
    return result("Suspended", "suspended: " .. says(st, "Ready", "as the customer asked"))
  end
  if state == "terminated" then
    return result("Healthy", "terminated: the service was removed")
  end
  if state == "cancelled" then
    return result("Healthy", "cancelled before activation")
  end
  if state == "active" then
    if is(st, "Ready", "True") then
      return result("Healthy", says(st, "Ready", "active"))
    end
    if is(st, "Ready", "False") and not is(st, "Progressing", "True") then
      return result("Degraded", "active but not ready: " .. says(st, "Ready", "service not ready"))
    end
    return result("Progressing", "active: " .. says(st, "Ready", "waiting for its service"))
  end
  if state == "created" or state == "pendingActive" or state == "pendingTerminate" then
    return result("Progressing", state .. ": " .. says(st, "Progressing", says(st, "Ready", "in progress")))
  end
  return result("Progressing", "waiting for the controller to set status.state")
end

return run(obj)
