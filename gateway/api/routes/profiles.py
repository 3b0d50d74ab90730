"""/api/v1/profiles: reusable tag lists (templates) for devices.

Built for a set of plugins, like the devices routes (no postponed annotations here).
"""

from fastapi import Response

from gateway.api.deps import Admin, Control, Viewer
from gateway.api.models import ProfilePublic
from gateway.api.problems import ERRORS
from gateway.api.routeset import RouteSet
from gateway.config import ProfileConfig, profile_union
from gateway.control import ControlPlane, Source
from gateway.plugins import Plugins

__all__ = ["build_routes"]


def public(control: ControlPlane, profile: ProfileConfig, source: Source) -> ProfilePublic:
    users = sorted(control.catalog.users_of(profile.id))
    return ProfilePublic(
        id=profile.id,
        type=profile.type,
        source=source,
        config=profile.model_dump(mode="json"),
        used_by=users,
    )


def build_routes(plugins: Plugins) -> RouteSet:
    routes = RouteSet(prefix="/api/v1/profiles", tags=["profiles"], responses=ERRORS)
    ProfileBody = profile_union(plugins)

    @routes.get("", response_model=list[ProfilePublic])
    async def list_profiles(control: Control, _: Viewer) -> list[ProfilePublic]:
        return [public(control, p, s) for p, s in control.profiles()]

    @routes.post("", response_model=ProfilePublic, status_code=201)
    async def create_profile(
        profile: ProfileBody,  # type: ignore[valid-type]
        control: Control,
        _: Admin,
    ) -> ProfilePublic:
        await control.create_profile(profile)
        return public(control, profile, "api")

    @routes.get("/{profile_id}", response_model=ProfilePublic)
    async def get_profile(profile_id: str, control: Control, _: Viewer) -> ProfilePublic:
        profile, source = control.profile(profile_id)
        return public(control, profile, source)

    @routes.put("/{profile_id}", response_model=ProfilePublic)
    async def replace_profile(
        profile_id: str,
        profile: ProfileBody,  # type: ignore[valid-type]
        control: Control,
        _: Admin,
    ) -> ProfilePublic:
        """Replace a profile; the running devices that use it pick up the new tags at once."""
        await control.replace_profile(profile_id, profile)
        return public(control, profile, "api")

    @routes.delete("/{profile_id}", status_code=204, response_class=Response)
    async def delete_profile(profile_id: str, control: Control, _: Admin) -> Response:
        """Delete an unused profile (409 names the devices still using it)."""
        await control.delete_profile(profile_id)
        return Response(status_code=204)

    return routes
