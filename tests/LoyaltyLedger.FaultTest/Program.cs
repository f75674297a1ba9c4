using LoyaltyLedger.FaultTest;

return await FaultRun.MainAsync(args);
