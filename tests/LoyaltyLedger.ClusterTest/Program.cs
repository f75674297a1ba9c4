using LoyaltyLedger.ClusterTest;

return await ClusterRun.MainAsync(args);
