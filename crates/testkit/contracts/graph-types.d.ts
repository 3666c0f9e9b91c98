// Excerpt of @microsoft/microsoft-graph-types 2.43.1, package/microsoft-graph.d.ts (MIT License,
// Copyright 2015 Microsoft Corporation; see README-graph.md). Copied verbatim, interface by
// interface, for the fake Graph contract test. Do not edit: refresh with the script in README-graph.md.

export type NullableOption<T> = T | null;
export type BodyType = "text" | "html";
export type Importance = "low" | "normal" | "high";
export type InferenceClassificationType = "focused" | "other";
export type FollowupFlagStatus = "notFlagged" | "complete" | "flagged";
export type AttachmentType = "file" | "item" | "reference";
export interface Entity {
    // The unique identifier for an entity. Read-only.
    id?: string;
}
export interface OutlookItem extends Entity {
    // The categories associated with the item
    categories?: NullableOption<string[]>;
    /**
     * Identifies the version of the item. Every time the item is changed, changeKey changes as well. This allows Exchange to
     * apply changes to the correct version of the object. Read-only.
     */
    changeKey?: NullableOption<string>;
    /**
     * The Timestamp type represents date and time information using ISO 8601 format and is always in UTC time. For example,
     * midnight UTC on Jan 1, 2014 is 2014-01-01T00:00:00Z
     */
    createdDateTime?: NullableOption<string>;
    /**
     * The Timestamp type represents date and time information using ISO 8601 format and is always in UTC time. For example,
     * midnight UTC on Jan 1, 2014 is 2014-01-01T00:00:00Z
     */
    lastModifiedDateTime?: NullableOption<string>;
}
export interface DirectoryObject extends Entity {
    // Date and time when this object was deleted. Always null when the object hasn't been deleted.
    deletedDateTime?: NullableOption<string>;
}
export interface User extends DirectoryObject {
    // A freeform text entry field for the user to describe themselves. Returned only on $select.
    aboutMe?: NullableOption<string>;
    /**
     * true if the account is enabled; otherwise, false. This property is required when a user is created. Returned only on
     * $select. Supports $filter (eq, ne, not, and in).
     */
    accountEnabled?: NullableOption<boolean>;
    /**
     * Sets the age group of the user. Allowed values: null, Minor, NotAdult, and Adult. For more information, see legal age
     * group property definitions. Returned only on $select. Supports $filter (eq, ne, not, and in).
     */
    ageGroup?: NullableOption<string>;
    /**
     * The licenses that are assigned to the user, including inherited (group-based) licenses. This property doesn't
     * differentiate between directly assigned and inherited licenses. Use the licenseAssignmentStates property to identify
     * the directly assigned and inherited licenses. Not nullable. Returned only on $select. Supports $filter (eq, not,
     * /$count eq 0, /$count ne 0).
     */
    assignedLicenses?: AssignedLicense[];
    /**
     * The plans that are assigned to the user. Read-only. Not nullable. Returned only on $select. Supports $filter (eq and
     * not).
     */
    assignedPlans?: AssignedPlan[];
    authorizationInfo?: NullableOption<AuthorizationInfo>;
    /**
     * The birthday of the user. The Timestamp type represents date and time information using ISO 8601 format and is always
     * in UTC. For example, midnight UTC on Jan 1, 2014, is 2014-01-01T00:00:00Z. Returned only on $select.
     */
    birthday?: string;
    /**
     * The telephone numbers for the user. NOTE: Although it's a string collection, only one number can be set for this
     * property. Read-only for users synced from the on-premises directory. Returned by default. Supports $filter (eq, not,
     * ge, le, startsWith).
     */
    businessPhones?: string[];
    /**
     * The city where the user is located. Maximum length is 128 characters. Returned only on $select. Supports $filter (eq,
     * ne, not, ge, le, in, startsWith, and eq on null values).
     */
    city?: NullableOption<string>;
    /**
     * The name of the company that the user is associated with. This property can be useful for describing the company that a
     * guest comes from. The maximum length is 64 characters.Returned only on $select. Supports $filter (eq, ne, not, ge, le,
     * in, startsWith, and eq on null values).
     */
    companyName?: NullableOption<string>;
    /**
     * Sets whether consent was obtained for minors. Allowed values: null, Granted, Denied, and NotRequired. For more
     * information, see legal age group property definitions. Returned only on $select. Supports $filter (eq, ne, not, and
     * in).
     */
    consentProvidedForMinor?: NullableOption<string>;
    /**
     * The country or region where the user is located; for example, US or UK. Maximum length is 128 characters. Returned only
     * on $select. Supports $filter (eq, ne, not, ge, le, in, startsWith, and eq on null values).
     */
    country?: NullableOption<string>;
    /**
     * The date and time the user was created, in ISO 8601 format and UTC. The value can't be modified and is automatically
     * populated when the entity is created. Nullable. For on-premises users, the value represents when they were first
     * created in Microsoft Entra ID. Property is null for some users created before June 2018 and on-premises users that were
     * synced to Microsoft Entra ID before June 2018. Read-only. Returned only on $select. Supports $filter (eq, ne, not , ge,
     * le, in).
     */
    createdDateTime?: NullableOption<string>;
    /**
     * Indicates whether the user account was created through one of the following methods: As a regular school or work
     * account (null). As an external account (Invitation). As a local account for an Azure Active Directory B2C tenant
     * (LocalAccount). Through self-service sign-up by an internal user using email verification (EmailVerified). Through
     * self-service sign-up by a guest signing up through a link that is part of a user flow (SelfServiceSignUp).
     * Read-only.Returned only on $select. Supports $filter (eq, ne, not, in).
     */
    creationType?: NullableOption<string>;
    /**
     * An open complex type that holds the value of a custom security attribute that is assigned to a directory object.
     * Nullable. Returned only on $select. Supports $filter (eq, ne, not, startsWith). The filter value is case-sensitive. To
     * read this property, the calling app must be assigned the CustomSecAttributeAssignment.Read.All permission. To write
     * this property, the calling app must be assigned the CustomSecAttributeAssignment.ReadWrite.All permissions. To read or
     * write this property in delegated scenarios, the admin must be assigned the Attribute Assignment Administrator role.
     */
    customSecurityAttributes?: NullableOption<CustomSecurityAttributeValue>;
    /**
     * The name of the department in which the user works. Maximum length is 64 characters. Returned only on $select. Supports
     * $filter (eq, ne, not , ge, le, in, and eq on null values).
     */
    department?: NullableOption<string>;
    // The limit on the maximum number of devices that the user is permitted to enroll. Allowed values are 5 or 1000.
    deviceEnrollmentLimit?: number;
    /**
     * The name displayed in the address book for the user. This value is usually the combination of the user's first name,
     * middle initial, and family name. This property is required when a user is created and it can't be cleared during
     * updates. Maximum length is 256 characters. Returned by default. Supports $filter (eq, ne, not , ge, le, in, startsWith,
     * and eq on null values), $orderby, and $search.
     */
    displayName?: NullableOption<string>;
    /**
     * The date and time when the user was hired or will start work in a future hire. Returned only on $select. Supports
     * $filter (eq, ne, not , ge, le, in).
     */
    employeeHireDate?: NullableOption<string>;
    /**
     * The employee identifier assigned to the user by the organization. The maximum length is 16 characters. Returned only on
     * $select. Supports $filter (eq, ne, not , ge, le, in, startsWith, and eq on null values).
     */
    employeeId?: NullableOption<string>;
    /**
     * The date and time when the user left or will leave the organization. To read this property, the calling app must be
     * assigned the User-LifeCycleInfo.Read.All permission. To write this property, the calling app must be assigned the
     * User.Read.All and User-LifeCycleInfo.ReadWrite.All permissions. To read this property in delegated scenarios, the admin
     * needs at least one of the following Microsoft Entra roles: Lifecycle Workflows Administrator (least privilege), Global
     * Reader. To write this property in delegated scenarios, the admin needs the Global Administrator role. Supports $filter
     * (eq, ne, not , ge, le, in). For more information, see Configure the employeeLeaveDateTime property for a user.
     */
    employeeLeaveDateTime?: NullableOption<string>;
    /**
     * Represents organization data (for example, division and costCenter) associated with a user. Returned only on $select.
     * Supports $filter (eq, ne, not , ge, le, in).
     */
    employeeOrgData?: NullableOption<EmployeeOrgData>;
    /**
     * Captures enterprise worker type. For example, Employee, Contractor, Consultant, or Vendor. Returned only on $select.
     * Supports $filter (eq, ne, not , ge, le, in, startsWith).
     */
    employeeType?: NullableOption<string>;
    /**
     * For a guest invited to the tenant using the invitation API, this property represents the invited user's invitation
     * status. For invited users, the state can be PendingAcceptance or Accepted, or null for all other users. Returned only
     * on $select. Supports $filter (eq, ne, not , in).
     */
    externalUserState?: NullableOption<string>;
    /**
     * Shows the timestamp for the latest change to the externalUserState property. Returned only on $select. Supports $filter
     * (eq, ne, not , in).
     */
    externalUserStateChangeDateTime?: NullableOption<string>;
    /**
     * The fax number of the user. Returned only on $select. Supports $filter (eq, ne, not , ge, le, in, startsWith, and eq on
     * null values).
     */
    faxNumber?: NullableOption<string>;
    /**
     * The given name (first name) of the user. Maximum length is 64 characters. Returned by default. Supports $filter (eq,
     * ne, not , ge, le, in, startsWith, and eq on null values).
     */
    givenName?: NullableOption<string>;
    /**
     * The hire date of the user. The Timestamp type represents date and time information using ISO 8601 format and is always
     * in UTC. For example, midnight UTC on Jan 1, 2014, is 2014-01-01T00:00:00Z. Returned only on $select. Note: This
     * property is specific to SharePoint in Microsoft 365. We recommend using the native employeeHireDate property to set and
     * update hire date values using Microsoft Graph APIs.
     */
    hireDate?: string;
    /**
     * Represents the identities that can be used to sign in to this user account. Microsoft (also known as a local account),
     * organizations, or social identity providers such as Facebook, Google, and Microsoft can provide identity and tie it to
     * a user account. It might contain multiple items with the same signInType value. Returned only on $select. Supports
     * $filter (eq) with limitations.
     */
    identities?: NullableOption<ObjectIdentity[]>;
    /**
     * The instant message voice-over IP (VOIP) session initiation protocol (SIP) addresses for the user. Read-only. Returned
     * only on $select. Supports $filter (eq, not, ge, le, startsWith).
     */
    imAddresses?: NullableOption<string[]>;
    // A list for the user to describe their interests. Returned only on $select.
    interests?: NullableOption<string[]>;
    /**
     * true if the user is a member of a restricted management administrative unit. If not set, the default value is null and
     * the default behavior is false. Read-only. To manage a user who is a member of a restricted management administrative
     * unit, the administrator or calling app must be assigned a Microsoft Entra role at the scope of the restricted
     * management administrative unit. Returned only on $select.
     */
    isManagementRestricted?: NullableOption<boolean>;
    // Don't use – reserved for future use.
    isResourceAccount?: NullableOption<boolean>;
    /**
     * The user's job title. Maximum length is 128 characters. Returned by default. Supports $filter (eq, ne, not , ge, le,
     * in, startsWith, and eq on null values).
     */
    jobTitle?: NullableOption<string>;
    /**
     * The time when this Microsoft Entra user last changed their password or when their password was created, whichever date
     * the latest action was performed. The date and time information uses ISO 8601 format and is always in UTC. For example,
     * midnight UTC on Jan 1, 2014 is 2014-01-01T00:00:00Z. Returned only on $select.
     */
    lastPasswordChangeDateTime?: NullableOption<string>;
    /**
     * Used by enterprise applications to determine the legal age group of the user. This property is read-only and calculated
     * based on ageGroup and consentProvidedForMinor properties. Allowed values: null, Undefined, MinorWithOutParentalConsent,
     * MinorWithParentalConsent, MinorNoParentalConsentRequired, NotAdult, and Adult. For more information, see legal age
     * group property definitions. Returned only on $select.
     */
    legalAgeGroupClassification?: NullableOption<string>;
    /**
     * State of license assignments for this user. Also indicates licenses that are directly assigned or the user inherited
     * through group memberships. Read-only. Returned only on $select.
     */
    licenseAssignmentStates?: NullableOption<LicenseAssignmentState[]>;
    /**
     * The SMTP address for the user, for example, jeff@contoso.com. Changes to this property update the user's proxyAddresses
     * collection to include the value as an SMTP address. This property can't contain accent characters. NOTE: We don't
     * recommend updating this property for Azure AD B2C user profiles. Use the otherMails property instead. Returned by
     * default. Supports $filter (eq, ne, not, ge, le, in, startsWith, endsWith, and eq on null values).
     */
    mail?: NullableOption<string>;
    /**
     * Settings for the primary mailbox of the signed-in user. You can get or update settings for sending automatic replies to
     * incoming messages, locale, and time zone. Returned only on $select.
     */
    mailboxSettings?: NullableOption<MailboxSettings>;
    /**
     * The mail alias for the user. This property must be specified when a user is created. Maximum length is 64 characters.
     * Returned only on $select. Supports $filter (eq, ne, not, ge, le, in, startsWith, and eq on null values).
     */
    mailNickname?: NullableOption<string>;
    /**
     * The primary cellular telephone number for the user. Read-only for users synced from the on-premises directory. Maximum
     * length is 64 characters. Returned by default. Supports $filter (eq, ne, not, ge, le, in, startsWith, and eq on null
     * values) and $search.
     */
    mobilePhone?: NullableOption<string>;
    // The URL for the user's site. Returned only on $select.
    mySite?: NullableOption<string>;
    /**
     * The office location in the user's place of business. Returned by default. Supports $filter (eq, ne, not, ge, le, in,
     * startsWith, and eq on null values).
     */
    officeLocation?: NullableOption<string>;
    /**
     * Contains the on-premises Active Directory distinguished name or DN. The property is only populated for customers who
     * are synchronizing their on-premises directory to Microsoft Entra ID via Microsoft Entra Connect. Read-only. Returned
     * only on $select.
     */
    onPremisesDistinguishedName?: NullableOption<string>;
    /**
     * Contains the on-premises domainFQDN, also called dnsDomainName synchronized from the on-premises directory. The
     * property is only populated for customers who are synchronizing their on-premises directory to Microsoft Entra ID via
     * Microsoft Entra Connect. Read-only. Returned only on $select.
     */
    onPremisesDomainName?: NullableOption<string>;
    /**
     * Contains extensionAttributes1-15 for the user. These extension attributes are also known as Exchange custom attributes
     * 1-15. Each attribute can store up to 1024 characters. For an onPremisesSyncEnabled user, the source of authority for
     * this set of properties is the on-premises and is read-only. For a cloud-only user (where onPremisesSyncEnabled is
     * false), these properties can be set during the creation or update of a user object. For a cloud-only user previously
     * synced from on-premises Active Directory, these properties are read-only in Microsoft Graph but can be fully managed
     * through the Exchange Admin Center or the Exchange Online V2 module in PowerShell. Returned only on $select. Supports
     * $filter (eq, ne, not, in).
     */
    onPremisesExtensionAttributes?: NullableOption<OnPremisesExtensionAttributes>;
    /**
     * This property is used to associate an on-premises Active Directory user account to their Microsoft Entra user object.
     * This property must be specified when creating a new user account in the Graph if you're using a federated domain for
     * the user's userPrincipalName (UPN) property. NOTE: The $ and _ characters can't be used when specifying this property.
     * Returned only on $select. Supports $filter (eq, ne, not, ge, le, in).
     */
    onPremisesImmutableId?: NullableOption<string>;
    /**
     * Indicates the last time at which the object was synced with the on-premises directory; for example:
     * 2013-02-16T03:04:54Z. The Timestamp type represents date and time information using ISO 8601 format and is always in
     * UTC. For example, midnight UTC on Jan 1, 2014 is 2014-01-01T00:00:00Z. Read-only. Returned only on $select. Supports
     * $filter (eq, ne, not, ge, le, in).
     */
    onPremisesLastSyncDateTime?: NullableOption<string>;
    /**
     * Errors when using Microsoft synchronization product during provisioning. Returned only on $select. Supports $filter
     * (eq, not, ge, le).
     */
    onPremisesProvisioningErrors?: NullableOption<OnPremisesProvisioningError[]>;
    /**
     * Contains the on-premises samAccountName synchronized from the on-premises directory. The property is only populated for
     * customers who are synchronizing their on-premises directory to Microsoft Entra ID via Microsoft Entra Connect.
     * Read-only. Returned only on $select. Supports $filter (eq, ne, not, ge, le, in, startsWith).
     */
    onPremisesSamAccountName?: NullableOption<string>;
    /**
     * Contains the on-premises security identifier (SID) for the user that was synchronized from on-premises to the cloud.
     * Read-only. Returned only on $select. Supports $filter (eq including on null values).
     */
    onPremisesSecurityIdentifier?: NullableOption<string>;
    /**
     * true if this user object is currently being synced from an on-premises Active Directory (AD); otherwise the user isn't
     * being synced and can be managed in Microsoft Entra ID. Read-only. Returned only on $select. Supports $filter (eq, ne,
     * not, in, and eq on null values).
     */
    onPremisesSyncEnabled?: NullableOption<boolean>;
    /**
     * Contains the on-premises userPrincipalName synchronized from the on-premises directory. The property is only populated
     * for customers who are synchronizing their on-premises directory to Microsoft Entra ID via Microsoft Entra Connect.
     * Read-only. Returned only on $select. Supports $filter (eq, ne, not, ge, le, in, startsWith).
     */
    onPremisesUserPrincipalName?: NullableOption<string>;
    /**
     * A list of other email addresses for the user; for example: ['bob@contoso.com', 'Robert@fabrikam.com']. Can store up to
     * 250 values, each with a limit of 250 characters. NOTE: This property can't contain accent characters. Returned only on
     * $select. Supports $filter (eq, not, ge, le, in, startsWith, endsWith, /$count eq 0, /$count ne 0).
     */
    otherMails?: string[];
    /**
     * Specifies password policies for the user. This value is an enumeration with one possible value being
     * DisableStrongPassword, which allows weaker passwords than the default policy to be specified. DisablePasswordExpiration
     * can also be specified. The two might be specified together; for example: DisablePasswordExpiration,
     * DisableStrongPassword. Returned only on $select. For more information on the default password policies, see Microsoft
     * Entra password policies. Supports $filter (ne, not, and eq on null values).
     */
    passwordPolicies?: NullableOption<string>;
    /**
     * Specifies the password profile for the user. The profile contains the user's password. This property is required when a
     * user is created. The password in the profile must satisfy minimum requirements as specified by the passwordPolicies
     * property. By default, a strong password is required. Returned only on $select. Supports $filter (eq, ne, not, in, and
     * eq on null values). To update this property: User-PasswordProfile.ReadWrite.All is the least privileged permission to
     * update this property. In delegated scenarios, the User Administrator Microsoft Entra role is the least privileged admin
     * role supported to update this property for nonadmin users. Privileged Authentication Administrator is the least
     * privileged role that's allowed to update this property for all administrators in the tenant. In general, the signed-in
     * user must have a higher privileged administrator role as indicated in Who can reset passwords. In app-only scenarios,
     * the calling app must be assigned a supported permission and at least the User Administrator Microsoft Entra role.
     */
    passwordProfile?: NullableOption<PasswordProfile>;
    // A list for the user to enumerate their past projects. Returned only on $select.
    pastProjects?: NullableOption<string[]>;
    /**
     * The postal code for the user's postal address. The postal code is specific to the user's country or region. In the
     * United States of America, this attribute contains the ZIP code. Maximum length is 40 characters. Returned only on
     * $select. Supports $filter (eq, ne, not, ge, le, in, startsWith, and eq on null values).
     */
    postalCode?: NullableOption<string>;
    // The preferred data location for the user. For more information, see OneDrive Online Multi-Geo.
    preferredDataLocation?: NullableOption<string>;
    /**
     * The preferred language for the user. The preferred language format is based on RFC 4646. The name is a combination of
     * an ISO 639 two-letter lowercase culture code associated with the language, and an ISO 3166 two-letter uppercase
     * subculture code associated with the country or region. Example: 'en-US', or 'es-ES'. Returned by default. Supports
     * $filter (eq, ne, not, ge, le, in, startsWith, and eq on null values)
     */
    preferredLanguage?: NullableOption<string>;
    // The preferred name for the user. Not Supported. This attribute returns an empty string.Returned only on $select.
    preferredName?: NullableOption<string>;
    print?: NullableOption<UserPrint>;
    /**
     * The plans that are provisioned for the user. Read-only. Not nullable. Returned only on $select. Supports $filter (eq,
     * not, ge, le).
     */
    provisionedPlans?: ProvisionedPlan[];
    /**
     * For example: ['SMTP: bob@contoso.com', 'smtp: bob@sales.contoso.com']. Changes to the mail property update this
     * collection to include the value as an SMTP address. For more information, see mail and proxyAddresses properties. The
     * proxy address prefixed with SMTP (capitalized) is the primary proxy address, while those addresses prefixed with smtp
     * are the secondary proxy addresses. For Azure AD B2C accounts, this property has a limit of 10 unique addresses.
     * Read-only in Microsoft Graph; you can update this property only through the Microsoft 365 admin center. Not nullable.
     * Returned only on $select. Supports $filter (eq, not, ge, le, startsWith, endsWith, /$count eq 0, /$count ne 0).
     */
    proxyAddresses?: string[];
    // A list for the user to enumerate their responsibilities. Returned only on $select.
    responsibilities?: NullableOption<string[]>;
    // A list for the user to enumerate the schools they attended. Returned only on $select.
    schools?: NullableOption<string[]>;
    /**
     * Security identifier (SID) of the user, used in Windows scenarios. Read-only. Returned by default. Supports $select and
     * $filter (eq, not, ge, le, startsWith).
     */
    securityIdentifier?: NullableOption<string>;
    /**
     * Errors published by a federated service describing a nontransient, service-specific error regarding the properties or
     * link from a user object. Supports $filter (eq, not, for isResolved and serviceInstance).
     */
    serviceProvisioningErrors?: NullableOption<ServiceProvisioningError[]>;
    /**
     * Do not use in Microsoft Graph. Manage this property through the Microsoft 365 admin center instead. Represents whether
     * the user should be included in the Outlook global address list. See Known issue.
     */
    showInAddressList?: NullableOption<boolean>;
    /**
     * Get the last signed-in date and request ID of the sign-in for a given user. Read-only.Returned only on $select.
     * Supports $filter (eq, ne, not, ge, le) but not with any other filterable properties. Note: Details for this property
     * require a Microsoft Entra ID P1 or P2 license and the AuditLog.Read.All permission.This property isn't returned for a
     * user who never signed in or last signed in before April 2020.
     */
    signInActivity?: NullableOption<SignInActivity>;
    /**
     * Any refresh tokens or session tokens (session cookies) issued before this time are invalid. Applications get an error
     * when using an invalid refresh or session token to acquire a delegated access token (to access APIs such as Microsoft
     * Graph). If this happens, the application needs to acquire a new refresh token by requesting the authorized endpoint.
     * Read-only. Use revokeSignInSessions to reset. Returned only on $select.
     */
    signInSessionsValidFromDateTime?: NullableOption<string>;
    // A list for the user to enumerate their skills. Returned only on $select.
    skills?: NullableOption<string[]>;
    /**
     * The state or province in the user's address. Maximum length is 128 characters. Returned only on $select. Supports
     * $filter (eq, ne, not, ge, le, in, startsWith, and eq on null values).
     */
    state?: NullableOption<string>;
    /**
     * The street address of the user's place of business. Maximum length is 1,024 characters. Returned only on $select.
     * Supports $filter (eq, ne, not, ge, le, in, startsWith, and eq on null values).
     */
    streetAddress?: NullableOption<string>;
    /**
     * The user's surname (family name or last name). Maximum length is 64 characters. Returned by default. Supports $filter
     * (eq, ne, not, ge, le, in, startsWith, and eq on null values).
     */
    surname?: NullableOption<string>;
    /**
     * A two-letter country code (ISO standard 3166). Required for users that are assigned licenses due to legal requirements
     * to check for availability of services in countries/regions. Examples include: US, JP, and GB. Not nullable. Returned
     * only on $select. Supports $filter (eq, ne, not, ge, le, in, startsWith, and eq on null values).
     */
    usageLocation?: NullableOption<string>;
    /**
     * The user principal name (UPN) of the user. The UPN is an Internet-style sign-in name for the user based on the Internet
     * standard RFC 822. By convention, this value should map to the user's email name. The general format is alias@domain,
     * where the domain must be present in the tenant's collection of verified domains. This property is required when a user
     * is created. The verified domains for the tenant can be accessed from the verifiedDomains property of organization.NOTE:
     * This property can't contain accent characters. Only the following characters are allowed A - Z, a - z, 0 - 9, ' . - _ !
     * # ^ ~. For the complete list of allowed characters, see username policies. Returned by default. Supports $filter (eq,
     * ne, not, ge, le, in, startsWith, endsWith) and $orderby.
     */
    userPrincipalName?: NullableOption<string>;
    /**
     * A string value that can be used to classify user types in your directory. The possible values are Member and Guest.
     * Returned only on $select. Supports $filter (eq, ne, not, in, and eq on null values). NOTE: For more information about
     * the permissions for members and guests, see What are the default user permissions in Microsoft Entra ID?
     */
    userType?: NullableOption<string>;
    // The user's activities across devices. Read-only. Nullable.
    activities?: NullableOption<UserActivity[]>;
    // The user's terms of use acceptance statuses. Read-only. Nullable.
    agreementAcceptances?: NullableOption<AgreementAcceptance[]>;
    // Represents the app roles a user is granted for an application. Supports $expand.
    appRoleAssignments?: NullableOption<AppRoleAssignment[]>;
    // The authentication methods that are supported for the user.
    authentication?: NullableOption<Authentication>;
    // The user's primary calendar. Read-only.
    calendar?: NullableOption<Calendar>;
    // The user's calendar groups. Read-only. Nullable.
    calendarGroups?: NullableOption<CalendarGroup[]>;
    // The user's calendars. Read-only. Nullable.
    calendars?: NullableOption<Calendar[]>;
    // The calendar view for the calendar. Read-only. Nullable.
    calendarView?: NullableOption<Event[]>;
    chats?: NullableOption<Chat[]>;
    cloudClipboard?: NullableOption<CloudClipboardRoot>;
    // The user's contacts folders. Read-only. Nullable.
    contactFolders?: NullableOption<ContactFolder[]>;
    // The user's contacts. Read-only. Nullable.
    contacts?: NullableOption<Contact[]>;
    // Directory objects that the user created. Read-only. Nullable.
    createdObjects?: NullableOption<DirectoryObject[]>;
    // The data security and governance settings for the user. Read-only. Nullable.
    dataSecurityAndGovernance?: NullableOption<UserDataSecurityAndGovernance>;
    // The list of troubleshooting events for this user.
    deviceManagementTroubleshootingEvents?: NullableOption<DeviceManagementTroubleshootingEvent[]>;
    /**
     * The users and contacts that report to the user. (The users and contacts that have their manager property set to this
     * user.) Read-only. Nullable. Supports $expand.
     */
    directReports?: NullableOption<DirectoryObject[]>;
    // The user's OneDrive. Read-only.
    drive?: NullableOption<Drive>;
    // A collection of drives available for this user. Read-only.
    drives?: NullableOption<Drive[]>;
    employeeExperience?: NullableOption<EmployeeExperienceUser>;
    // The user's events. Default is to show Events under the Default Calendar. Read-only. Nullable.
    events?: NullableOption<Event[]>;
    // The collection of open extensions defined for the user. Read-only. Supports $expand. Nullable.
    extensions?: NullableOption<Extension[]>;
    followedSites?: NullableOption<Site[]>;
    /**
     * Relevance classification of the user's messages based on explicit designations that override inferred relevance or
     * importance.
     */
    inferenceClassification?: NullableOption<InferenceClassification>;
    /**
     * Represents relationships between a user and items such as OneDrive for work or school documents, calculated using
     * advanced analytics and machine learning techniques. Read-only. Nullable.
     */
    insights?: NullableOption<ItemInsights>;
    joinedTeams?: NullableOption<Team[]>;
    // A collection of this user's license details. Read-only.
    licenseDetails?: NullableOption<LicenseDetails[]>;
    // The user's mail folders. Read-only. Nullable.
    mailFolders?: NullableOption<MailFolder[]>;
    // Zero or more managed app registrations that belong to the user.
    managedAppRegistrations?: NullableOption<ManagedAppRegistration[]>;
    // The managed devices associated with the user.
    managedDevices?: NullableOption<ManagedDevice[]>;
    // The user or contact that is this user's manager. Read-only. Supports $expand.
    manager?: NullableOption<DirectoryObject>;
    // The groups and directory roles that the user is a member of. Read-only. Nullable. Supports $expand.
    memberOf?: NullableOption<DirectoryObject[]>;
    // The messages in a mailbox or folder. Read-only. Nullable.
    messages?: NullableOption<Message[]>;
    oauth2PermissionGrants?: NullableOption<OAuth2PermissionGrant[]>;
    onenote?: NullableOption<Onenote>;
    // Information about a meeting, including the URL used to join a meeting, the attendees list, and the description.
    onlineMeetings?: NullableOption<OnlineMeeting[]>;
    outlook?: NullableOption<OutlookUser>;
    /**
     * Devices the user owns. Read-only. Nullable. Supports $expand and $filter (/$count eq 0, /$count ne 0, /$count eq 1,
     * /$count ne 1).
     */
    ownedDevices?: NullableOption<DirectoryObject[]>;
    /**
     * Directory objects the user owns. Read-only. Nullable. Supports $expand, $select nested in $expand, and $filter (/$count
     * eq 0, /$count ne 0, /$count eq 1, /$count ne 1).
     */
    ownedObjects?: NullableOption<DirectoryObject[]>;
    // People that are relevant to the user. Read-only. Nullable.
    people?: NullableOption<Person[]>;
    // List all resource-specific permission grants of a user.
    permissionGrants?: NullableOption<ResourceSpecificPermissionGrant[]>;
    // The user's profile photo. Read-only.
    photo?: NullableOption<ProfilePhoto>;
    // The collection of the user's profile photos in different sizes. Read-only.
    photos?: NullableOption<ProfilePhoto[]>;
    // Entry-point to the Planner resource that might exist for a user. Read-only.
    planner?: NullableOption<PlannerUser>;
    presence?: NullableOption<Presence>;
    // Devices that are registered for the user. Read-only. Nullable. Supports $expand and returns up to 100 objects.
    registeredDevices?: NullableOption<DirectoryObject[]>;
    scopedRoleMemberOf?: NullableOption<ScopedRoleMembership[]>;
    settings?: NullableOption<UserSettings>;
    // The identifier that relates the user to the working time schedule triggers. Read-Only. Nullable
    solutions?: NullableOption<UserSolutionRoot>;
    /**
     * The users and groups responsible for this guest's privileges in the tenant and keeping the guest's information and
     * access updated. (HTTP Methods: GET, POST, DELETE.). Supports $expand.
     */
    sponsors?: NullableOption<DirectoryObject[]>;
    // A container for Microsoft Teams features available for the user. Read-only. Nullable.
    teamwork?: NullableOption<UserTeamwork>;
    // Represents the To Do services available to a user.
    todo?: NullableOption<Todo>;
    // The groups, including nested groups, and directory roles that a user is a member of. Nullable.
    transitiveMemberOf?: NullableOption<DirectoryObject[]>;
}
export interface Message extends OutlookItem {
    // The Bcc: recipients for the message.
    bccRecipients?: NullableOption<Recipient[]>;
    // The body of the message. It can be in HTML or text format. Find out about safe HTML in a message body.
    body?: NullableOption<ItemBody>;
    // The first 255 characters of the message body. It is in text format.
    bodyPreview?: NullableOption<string>;
    // The Cc: recipients for the message.
    ccRecipients?: NullableOption<Recipient[]>;
    // The ID of the conversation the email belongs to.
    conversationId?: NullableOption<string>;
    // Indicates the position of the message within the conversation.
    conversationIndex?: NullableOption<string>;
    // Indicates the status, start date, due date, or completion date for the message.
    flag?: NullableOption<FollowupFlag>;
    /**
     * The owner of the mailbox from which the message is sent. In most cases, this value is the same as the sender property,
     * except for sharing or delegation scenarios. The value must correspond to the actual mailbox used. Find out more about
     * setting the from and sender properties of a message.
     */
    from?: NullableOption<Recipient>;
    /**
     * Indicates whether the message has attachments. This property doesn't include inline attachments, so if a message
     * contains only inline attachments, this property is false. To verify the existence of inline attachments, parse the body
     * property to look for a src attribute, such as &amp;lt;IMG src='cid:image001.jpg@01D26CD8.6C05F070'&amp;gt;.
     */
    hasAttachments?: NullableOption<boolean>;
    // The importance of the message. The possible values are: low, normal, and high.
    importance?: NullableOption<Importance>;
    /**
     * The classification of the message for the user, based on inferred relevance or importance, or on an explicit override.
     * The possible values are: focused or other.
     */
    inferenceClassification?: NullableOption<InferenceClassificationType>;
    /**
     * A collection of message headers defined by RFC5322. The set includes message headers indicating the network path taken
     * by a message from the sender to the recipient. It can also contain custom message headers that hold app data for the
     * message. Returned only on applying a $select query option. Read-only.
     */
    internetMessageHeaders?: NullableOption<InternetMessageHeader[]>;
    // The message ID in the format specified by RFC2822.
    internetMessageId?: NullableOption<string>;
    // Indicates whether a read receipt is requested for the message.
    isDeliveryReceiptRequested?: NullableOption<boolean>;
    // Indicates whether the message is a draft. A message is a draft if it hasn't been sent yet.
    isDraft?: NullableOption<boolean>;
    // Indicates whether the message has been read.
    isRead?: NullableOption<boolean>;
    // Indicates whether a read receipt is requested for the message.
    isReadReceiptRequested?: NullableOption<boolean>;
    // The unique identifier for the message's parent mailFolder.
    parentFolderId?: NullableOption<string>;
    /**
     * The date and time the message was received. The date and time information uses ISO 8601 format and is always in UTC
     * time. For example, midnight UTC on Jan 1, 2014 is 2014-01-01T00:00:00Z.
     */
    receivedDateTime?: NullableOption<string>;
    // The email addresses to use when replying.
    replyTo?: NullableOption<Recipient[]>;
    /**
     * The account that is used to generate the message. In most cases, this value is the same as the from property. You can
     * set this property to a different value when sending a message from a shared mailbox, for a shared calendar, or as a
     * delegate. In any case, the value must correspond to the actual mailbox used. Find out more about setting the from and
     * sender properties of a message.
     */
    sender?: NullableOption<Recipient>;
    /**
     * The date and time the message was sent. The date and time information uses ISO 8601 format and is always in UTC time.
     * For example, midnight UTC on Jan 1, 2014 is 2014-01-01T00:00:00Z.
     */
    sentDateTime?: NullableOption<string>;
    // The subject of the message.
    subject?: NullableOption<string>;
    // The To: recipients for the message.
    toRecipients?: NullableOption<Recipient[]>;
    /**
     * The part of the body of the message that is unique to the current message. uniqueBody is not returned by default but
     * can be retrieved for a given message by use of the ?$select=uniqueBody query. It can be in HTML or text format.
     */
    uniqueBody?: NullableOption<ItemBody>;
    /**
     * The URL to open the message in Outlook on the web.You can append an ispopout argument to the end of the URL to change
     * how the message is displayed. If ispopout is not present or if it is set to 1, then the message is shown in a popout
     * window. If ispopout is set to 0, the browser shows the message in the Outlook on the web review pane.The message opens
     * in the browser if you are signed in to your mailbox via Outlook on the web. You are prompted to sign in if you are not
     * already signed in with the browser.This URL cannot be accessed from within an iFrame.
     */
    webLink?: NullableOption<string>;
    // The fileAttachment and itemAttachment attachments for the message.
    attachments?: NullableOption<Attachment[]>;
    // The collection of open extensions defined for the message. Nullable.
    extensions?: NullableOption<Extension[]>;
    // The collection of multi-value extended properties defined for the message. Nullable.
    multiValueExtendedProperties?: NullableOption<MultiValueLegacyExtendedProperty[]>;
    // The collection of single-value extended properties defined for the message. Nullable.
    singleValueExtendedProperties?: NullableOption<SingleValueLegacyExtendedProperty[]>;
}
export interface Recipient {
    // The recipient's email address.
    emailAddress?: NullableOption<EmailAddress>;
}
export interface EmailAddress {
    // The email address of the person or entity.
    address?: NullableOption<string>;
    // The display name of the person or entity.
    name?: NullableOption<string>;
}
// tslint:disable-next-line: interface-name
export interface ItemBody {
    // The content of the item.
    content?: NullableOption<string>;
    // The type of the content. Possible values are text and html.
    contentType?: NullableOption<BodyType>;
}
export interface Attachment extends Entity {
    // The MIME type.
    contentType?: NullableOption<string>;
    // true if the attachment is an inline attachment; otherwise, false.
    isInline?: boolean;
    /**
     * The Timestamp type represents date and time information using ISO 8601 format and is always in UTC time. For example,
     * midnight UTC on Jan 1, 2014 is 2014-01-01T00:00:00Z
     */
    lastModifiedDateTime?: NullableOption<string>;
    // The attachment's file name.
    name?: NullableOption<string>;
    // The length of the attachment in bytes.
    size?: number;
}
export interface FileAttachment extends Attachment {
    // The base64-encoded contents of the file.
    contentBytes?: NullableOption<string>;
    // The ID of the attachment in the Exchange store.
    contentId?: NullableOption<string>;
    // Don't use this property as it isn't supported.
    contentLocation?: NullableOption<string>;
}
export interface UploadSession {
    /**
     * The date and time in UTC that the upload session expires. The complete file must be uploaded before this expiration
     * time is reached. Each fragment uploaded during the session extends the expiration time.
     */
    expirationDateTime?: NullableOption<string>;
    /**
     * A collection of byte ranges that the server is missing for the file. These ranges are zero indexed and of the format
     * 'start-end' (for example '0-26' to indicate the first 27 bytes of the file). When uploading files as Outlook
     * attachments, instead of a collection of ranges, this property always indicates a single value '{start}', the location
     * in the file where the next upload should begin.
     */
    nextExpectedRanges?: NullableOption<string[]>;
    // The URL endpoint that accepts PUT requests for byte ranges of the file.
    uploadUrl?: NullableOption<string>;
}
export interface MailFolder extends Entity {
    // The number of immediate child mailFolders in the current mailFolder.
    childFolderCount?: NullableOption<number>;
    // The mailFolder's display name.
    displayName?: NullableOption<string>;
    /**
     * Indicates whether the mailFolder is hidden. This property can be set only when creating the folder. Find more
     * information in Hidden mail folders.
     */
    isHidden?: NullableOption<boolean>;
    // The unique identifier for the mailFolder's parent mailFolder.
    parentFolderId?: NullableOption<string>;
    // The number of items in the mailFolder.
    totalItemCount?: NullableOption<number>;
    // The number of items in the mailFolder marked as unread.
    unreadItemCount?: NullableOption<number>;
    // The collection of child folders in the mailFolder.
    childFolders?: NullableOption<MailFolder[]>;
    // The collection of rules that apply to the user's Inbox folder.
    messageRules?: NullableOption<MessageRule[]>;
    // The collection of messages in the mailFolder.
    messages?: NullableOption<Message[]>;
    // The collection of multi-value extended properties defined for the mailFolder. Read-only. Nullable.
    multiValueExtendedProperties?: NullableOption<MultiValueLegacyExtendedProperty[]>;
    // The collection of single-value extended properties defined for the mailFolder. Read-only. Nullable.
    singleValueExtendedProperties?: NullableOption<SingleValueLegacyExtendedProperty[]>;
}
// tslint:disable-next-line: interface-name
export interface InternetMessageHeader {
    // Represents the key in a key-value pair.
    name?: NullableOption<string>;
    // The value in a key-value pair.
    value?: NullableOption<string>;
}
export interface AttachmentItem {
    // The type of attachment. Possible values are: file, item, reference. Required.
    attachmentType?: NullableOption<AttachmentType>;
    /**
     * The CID or Content-Id of the attachment for referencing for the in-line attachments using the &amp;lt;img
     * src='cid:contentId'&amp;gt; tag in HTML messages. Optional.
     */
    contentId?: NullableOption<string>;
    // The nature of the data in the attachment. Optional.
    contentType?: NullableOption<string>;
    // true if the attachment is an inline attachment; otherwise, false. Optional.
    isInline?: NullableOption<boolean>;
    /**
     * The display name of the attachment. This can be a descriptive string and doesn't have to be the actual file name.
     * Required.
     */
    name?: NullableOption<string>;
    // The length of the attachment in bytes. Required.
    size?: NullableOption<number>;
}
export interface FollowupFlag {
    // The date and time that the follow-up was finished.
    completedDateTime?: NullableOption<DateTimeTimeZone>;
    /**
     * The date and time that the follow-up is to be finished. Note: To set the due date, you must also specify the
     * startDateTime; otherwise, you get a 400 Bad Request response.
     */
    dueDateTime?: NullableOption<DateTimeTimeZone>;
    // The status for follow-up for an item. Possible values are notFlagged, complete, and flagged.
    flagStatus?: NullableOption<FollowupFlagStatus>;
    // The date and time that the follow-up is to begin.
    startDateTime?: NullableOption<DateTimeTimeZone>;
}
export interface DateTimeTimeZone {
    /**
     * A single point of time in a combined date and time representation ({date}T{time}; for example,
     * 2017-08-29T04:00:00.0000000).
     */
    dateTime?: string;
    // Represents a time zone, for example, 'Pacific Standard Time'. See below for more possible values.
    timeZone?: NullableOption<string>;
}
