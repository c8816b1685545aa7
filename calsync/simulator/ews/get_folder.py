"""GetFolder for root, msgfolderroot and the calendar (what exchangelib's account.calendar asks for)."""

from __future__ import annotations

from calsync.simulator.ews.context import Context, T, folder_target
from calsync.simulator.ews.soap import error_message, response

_RIGHTS = (
    "<t:EffectiveRights><t:CreateAssociated>true</t:CreateAssociated><t:CreateContents>true</t:CreateContents>"
    "<t:CreateHierarchy>true</t:CreateHierarchy><t:Delete>true</t:Delete><t:Modify>true</t:Modify>"
    "<t:Read>true</t:Read><t:ViewPrivateItems>true</t:ViewPrivateItems></t:EffectiveRights>"
)


def _folder(ctx: Context, which: str) -> str:
    mbx = ctx.mailbox
    ck = mbx.folder_change_key
    if which == "calendar":
        return (
            f'<t:CalendarFolder><t:FolderId Id="{mbx.calendar_folder_id}" ChangeKey="{ck}"/>'
            f'<t:ParentFolderId Id="{mbx.msgroot_folder_id}" ChangeKey="{ck}"/>'
            "<t:FolderClass>IPF.Appointment</t:FolderClass><t:DisplayName>Calendar</t:DisplayName>"
            f"<t:TotalCount>{len(mbx.items)}</t:TotalCount><t:ChildFolderCount>0</t:ChildFolderCount>"
            f"{_RIGHTS}</t:CalendarFolder>"
        )
    if which == "msgfolderroot":
        return (
            f'<t:Folder><t:FolderId Id="{mbx.msgroot_folder_id}" ChangeKey="{ck}"/>'
            f'<t:ParentFolderId Id="{mbx.root_folder_id}" ChangeKey="{ck}"/>'
            "<t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>Top of Information Store</t:DisplayName>"
            f"<t:TotalCount>0</t:TotalCount><t:ChildFolderCount>1</t:ChildFolderCount>{_RIGHTS}"
            "<t:UnreadCount>0</t:UnreadCount></t:Folder>"
        )
    return (
        f'<t:Folder><t:FolderId Id="{mbx.root_folder_id}" ChangeKey="{ck}"/>'
        "<t:DisplayName>Root</t:DisplayName>"
        f"<t:TotalCount>0</t:TotalCount><t:ChildFolderCount>1</t:ChildFolderCount>{_RIGHTS}"
        "<t:UnreadCount>0</t:UnreadCount></t:Folder>"
    )


def handle(ctx: Context) -> str:
    mbx = ctx.mailbox
    by_id = {mbx.root_folder_id: "root", mbx.msgroot_folder_id: "msgfolderroot", mbx.calendar_folder_id: "calendar"}
    messages = []
    ids = ctx.request.body.find("{http://schemas.microsoft.com/exchange/services/2006/messages}FolderIds")
    for elem in ids if ids is not None else []:
        if not isinstance(elem.tag, str) or not elem.tag.startswith(T):
            continue
        kind, value = folder_target(elem)
        which = value if kind == "distinguished" else by_id.get(value or "")
        if which not in ("root", "msgfolderroot", "calendar"):
            code = "ErrorFolderNotFound" if kind == "distinguished" else "ErrorInvalidIdMalformed"
            text = (
                "The specified folder could not be found in the store."
                if kind == "distinguished"
                else ("Id is malformed.")
            )
            messages.append(error_message("GetFolder", code, text))
            continue
        messages.append(
            '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f"<m:Folders>{_folder(ctx, which)}</m:Folders></m:GetFolderResponseMessage>"
        )
    return response("GetFolder", "".join(messages))
